from django.apps import AppConfig


class MllpConfig(AppConfig):
    name = "mllp"
    verbose_name = "HL7 listener (MLLP)"
