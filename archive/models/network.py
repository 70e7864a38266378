"""The network configuration: modalities and peers (every node sees the same
list, DESIGN §10) and the answers of queries sent to modalities."""

from django.db import models


class Modality(models.Model):
    """A DICOM peer known by a symbolic name, with what it may ask of us
    (Orthanc's DicomModalities entry and its Allow* options)."""

    name = models.CharField(max_length=64, unique=True)
    aet = models.CharField("AE title", max_length=16)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    manufacturer = models.CharField(max_length=32, default="Generic")
    allow_echo = models.BooleanField(default=True)
    allow_find = models.BooleanField(default=True)
    allow_move = models.BooleanField(default=True)
    allow_get = models.BooleanField(default=True)
    allow_store = models.BooleanField(default=True)
    # The AE title we present when we call this modality (Orthanc's LocalAet).
    local_aet = models.CharField(max_length=16, blank=True)
    timeout = models.PositiveIntegerField(default=0, help_text="seconds; 0 uses the default")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "modality"
        verbose_name_plural = "modalities"
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.aet}@{self.host}:{self.port})"


class DicomQuery(models.Model):
    """A C-FIND sent to a modality and its answers, kept so that any node can list
    and retrieve them (Orthanc's /queries/{id}, which Orthanc keeps in memory)."""

    id = models.CharField(max_length=36, primary_key=True)
    modality = models.CharField(max_length=64)
    level = models.CharField(max_length=8)
    query = models.JSONField()
    # One dict per answer: "gggg,eeee" → {"Name", "Type", "Value"} (Orthanc's DICOM-as-JSON).
    answers = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "dicom_query"


class Peer(models.Model):
    """An Orthanc-compatible HTTP peer (another pacsweb, an Orthanc): Orthanc's OrthancPeers."""

    name = models.CharField(max_length=64, unique=True)
    url = models.CharField(max_length=500)
    username = models.CharField(max_length=128, blank=True)
    # Sent to the peer, never shown by the API.
    password = models.CharField(max_length=256, blank=True)
    http_headers = models.JSONField(default=dict)
    timeout = models.PositiveIntegerField(default=0, help_text="seconds; 0 uses the default")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "peer"
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.url})"
