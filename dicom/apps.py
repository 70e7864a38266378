from django.apps import AppConfig


class DicomConfig(AppConfig):
    name = "dicom"
    verbose_name = "DICOM listener"
