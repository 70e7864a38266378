"""Read-only views of the index in the Django admin: the index is written by the
ingest path only, never edited by hand."""

from django.contrib import admin

from archive.models import Attachment, Change, Instance, Metadata, Patient, Series, Study


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Patient)
class PatientAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "patient_id", "patient_name_norm", "patient_birth_date", "last_update", "is_stable")
    search_fields = ("patient_id_norm", "patient_name_norm")


@admin.register(Study)
class StudyAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "study_instance_uid", "study_date", "study_description_norm", "last_update", "is_stable")
    search_fields = ("study_instance_uid", "accession_number_norm", "study_description_norm")
    list_select_related = ("patient",)


@admin.register(Series)
class SeriesAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "series_instance_uid", "modality", "series_number", "last_update", "is_stable")
    search_fields = ("series_instance_uid",)


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "sop_instance_uid", "instance_number", "origin", "remote_aet", "created_at")
    search_fields = ("sop_instance_uid",)


@admin.register(Attachment)
class AttachmentAdmin(ReadOnlyAdmin):
    list_display = ("resource_id", "level", "name", "size", "revision")


@admin.register(Metadata)
class MetadataAdmin(ReadOnlyAdmin):
    list_display = ("resource_id", "level", "name", "value", "revision")


@admin.register(Change)
class ChangeAdmin(ReadOnlyAdmin):
    list_display = ("seq", "change_type", "level", "public_id", "node", "date")
    list_filter = ("change_type", "level")
