"""The DICOM index: Patient → Study → Series → Instance, attachments, metadata, changes.

Each resource row keeps its Orthanc-compatible public id, its DICOM identifier,
the main DICOM tags of its level as Orthanc shows them (`main_dicom_tags`), and
normalised copies of the tags queries match on, indexed. Rows are written by the
ingest path only (archive.ingest); this module only describes them.
"""

from django.db import models


class Level(models.TextChoices):
    PATIENT = "Patient"
    STUDY = "Study"
    SERIES = "Series"
    INSTANCE = "Instance"


class Resource(models.Model):
    public_id = models.CharField(max_length=44, unique=True)
    main_dicom_tags = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    last_update = models.DateTimeField(db_index=True)
    # Set by stable detection once last_update is older than PACS_STABLE_AGE;
    # cleared by every new instance below the resource.
    is_stable = models.BooleanField(default=False)

    class Meta:
        abstract = True

    def __str__(self):
        return self.public_id


class Patient(Resource):
    patient_id = models.CharField(max_length=64)
    patient_id_norm = models.CharField(max_length=64, db_index=True)
    patient_name_norm = models.CharField(max_length=324, db_index=True)
    patient_birth_date = models.CharField(max_length=8, db_index=True)
    patient_sex = models.CharField(max_length=16)
    # Orthanc's protection against recycling (PUT /patients/{id}/protected): a protected
    # patient is never removed to make room (archive.recycling). A database default:
    # the ingest path inserts patient rows in raw SQL.
    is_protected = models.BooleanField(default=False, db_default=False)

    class Meta:
        db_table = "patient"


class Study(Resource):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="studies")
    study_instance_uid = models.CharField(max_length=64, db_index=True)
    study_date = models.CharField(max_length=8, db_index=True)
    accession_number_norm = models.CharField(max_length=64, db_index=True)
    study_description_norm = models.CharField(max_length=64, db_index=True)
    referring_physician_norm = models.CharField(max_length=324)

    class Meta:
        db_table = "study"
        verbose_name_plural = "studies"


class Series(Resource):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    series_instance_uid = models.CharField(max_length=64, db_index=True)
    modality = models.CharField(max_length=16, db_index=True)
    series_description_norm = models.CharField(max_length=64)
    series_number = models.CharField(max_length=12)

    class Meta:
        db_table = "series"
        verbose_name_plural = "series"


class Instance(Resource):
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    # Unique across the archive: a UID names one object in the whole DICOM world
    # (PS3.5 §9), so the same SOP Instance UID is never indexed twice.
    sop_instance_uid = models.CharField(max_length=64, unique=True)
    sop_class_uid = models.CharField(max_length=64, db_index=True)
    transfer_syntax_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True)
    # Image attributes QIDO-RS returns for every instance (PS3.18 Table
    # 6.7.1-2a: Rows, Columns, BitsAllocated) that are not Orthanc main tags, so
    # they stay out of main_dicom_tags; NULL for instances indexed before them.
    image_tags = models.JSONField(null=True)
    # What Orthanc keeps as instance metadata: where and how it came in.
    origin = models.CharField(max_length=16)
    remote_aet = models.CharField(max_length=16, blank=True)
    remote_ip = models.CharField(max_length=45, blank=True)
    called_aet = models.CharField(max_length=16, blank=True)
    # Who stored it over HTTP (Orthanc's HttpUsername metadata).
    # A database default too: bulk writers (benchmarks/indexfill.py) leave it out.
    http_username = models.CharField(max_length=150, blank=True, default="", db_default="")
    node = models.CharField(max_length=128, blank=True)

    class Meta:
        db_table = "instance"


class Attachment(models.Model):
    """A stored file belonging to a resource. An instance's DICOM file is its
    attachment named "dicom"."""

    DICOM = "dicom"

    level = models.CharField(max_length=8, choices=Level.choices)
    resource_id = models.CharField(max_length=44)
    name = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=64, unique=True)
    size = models.BigIntegerField()
    md5 = models.CharField(max_length=32)
    revision = models.IntegerField(default=1)

    class Meta:
        db_table = "attachment"
        constraints = [
            models.UniqueConstraint(fields=["resource_id", "name"], name="attachment_per_resource")
        ]


class Metadata(models.Model):
    level = models.CharField(max_length=8, choices=Level.choices)
    resource_id = models.CharField(max_length=44)
    name = models.CharField(max_length=128)
    value = models.TextField()
    revision = models.IntegerField(default=1)

    class Meta:
        db_table = "metadata"
        constraints = [
            models.UniqueConstraint(fields=["resource_id", "name"], name="metadata_per_resource")
        ]


class Label(models.Model):
    """A label on a resource (Orthanc 1.12): a free tag for grouping and finding,
    e.g. the research project a study belongs to."""

    level = models.CharField(max_length=8, choices=Level.choices)
    resource_id = models.CharField(max_length=44)
    name = models.CharField(max_length=64, db_index=True)

    class Meta:
        db_table = "label"
        constraints = [
            models.UniqueConstraint(fields=["resource_id", "name"], name="label_per_resource")
        ]


class ChangeType(models.TextChoices):
    NEW_INSTANCE = "NewInstance"
    NEW_SERIES = "NewSeries"
    NEW_STUDY = "NewStudy"
    NEW_PATIENT = "NewPatient"
    STABLE_SERIES = "StableSeries"
    STABLE_STUDY = "StableStudy"
    STABLE_PATIENT = "StablePatient"
    DELETED = "Deleted"
    UPDATED_ATTACHMENT = "UpdatedAttachment"
    UPDATED_METADATA = "UpdatedMetadata"


class Change(models.Model):
    """Append-only log, read by GET /changes. The sequence is the primary key."""

    seq = models.BigAutoField(primary_key=True)
    change_type = models.CharField(max_length=24, choices=ChangeType.choices)
    level = models.CharField(max_length=8, choices=Level.choices)
    public_id = models.CharField(max_length=44)
    node = models.CharField(max_length=128, blank=True)
    date = models.DateTimeField()

    class Meta:
        db_table = "change"
        # A deletion removes the changes of the resources it deletes.
        indexes = [models.Index(fields=["public_id"], name="change_public_id")]


class FileDeletion(models.Model):
    """The deletion outbox: a stored file no index row refers to any more.

    Written in the transaction that removed the last reference, so a file is
    removed only once that transaction has committed; a worker (or, when the
    queue lost the task, the housekeeper) removes the file, then the row.
    """

    storage_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "file_deletion"
