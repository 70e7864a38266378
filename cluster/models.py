"""Cluster-wide state: nodes, jobs, modalities, peers (DESIGN §7, §10).

Everything here lives in the database so that every node sees the same list.
"""

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


class JobState(models.TextChoices):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILURE = "Failure"
    PAUSED = "Paused"
    CANCELLED = "Cancelled"


FINISHED = (JobState.SUCCESS, JobState.FAILURE, JobState.CANCELLED)


class Job(models.Model):
    """A unit of background work; the row is the truth, the RQ queue only a
    delivery (DESIGN §7). Any node lists, pauses, resumes and cancels any job."""

    id = models.CharField(max_length=36, primary_key=True)
    type = models.CharField(max_length=32)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.PENDING, db_index=True)
    # "pause" or "cancel", asked by any node, honoured by the worker between items.
    requested = models.CharField(max_length=8, blank=True)
    priority = models.IntegerField(default=0)
    progress = models.PositiveSmallIntegerField(default=0)
    # Items done: a resumed or re-queued job continues from here.
    position = models.IntegerField(default=0)
    params = models.JSONField(default=dict)
    content = models.JSONField(default=dict)
    node = models.CharField(max_length=128, blank=True)
    worker = models.CharField(max_length=160, blank=True)
    # Incremented by every run: a run only writes the row while it is the latest one.
    attempts = models.IntegerField(default=0)
    # Runs whose worker died (killed, node lost) since the job was (re)submitted.
    lost_runs = models.IntegerField(default=0)
    error_code = models.IntegerField(default=0)
    error_description = models.CharField(max_length=200, default="Success")
    error_details = models.TextField(blank=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True)
    completed_at = models.DateTimeField(null=True, db_index=True)
    heartbeat_at = models.DateTimeField(null=True)
    queued_at = models.DateTimeField(null=True)
    runtime = models.FloatField(default=0.0)
    # The file the job produced in the archive area (asynchronous archives).
    output = models.CharField(max_length=64, blank=True)
    output_size = models.BigIntegerField(default=0)
    output_used_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "job"
        ordering = ["created_at"]


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


class Lease(models.Model):
    """Who runs a periodic task of the housekeeper until when: one node at a time."""

    name = models.CharField(max_length=64, primary_key=True)
    holder = models.CharField(max_length=160)
    until = models.DateTimeField()

    class Meta:
        db_table = "lease"


class NodeProcess(models.Model):
    """One process of a node (web, dicom, worker, housekeeper), as its last
    heartbeat described it. Rows of processes gone for long are removed by the
    housekeeper."""

    key = models.CharField(max_length=200, primary_key=True)  # node:kind:host:pid
    node = models.CharField(max_length=128, db_index=True)
    kind = models.CharField(max_length=16)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    url = models.CharField(max_length=300, blank=True)
    dicom_port = models.IntegerField(null=True)
    ae_title = models.CharField(max_length=16, blank=True)
    version = models.CharField(max_length=32)
    settings_hash = models.CharField(max_length=16)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    rss = models.BigIntegerField(default=0)
    associations = models.IntegerField(default=0)
    queues = models.JSONField(default=dict)

    class Meta:
        db_table = "node_process"


class NodeState(models.Model):
    """What an administrator set on a node: draining."""

    node = models.CharField(max_length=128, primary_key=True)
    draining = models.BooleanField(default=False)
    changed_at = models.DateTimeField()

    class Meta:
        db_table = "node_state"


class AuditEvent(models.Model):
    """Who did what to which resource, and when. Written by the access layer (HTTP)
    and the DICOM listener; no API route changes or deletes a row."""

    at = models.DateTimeField(db_index=True)
    # "user", "token" or "ae" (a DICOM peer, named by its calling AE title).
    actor_kind = models.CharField(max_length=8)
    actor = models.CharField(max_length=160, db_index=True)
    address = models.CharField(max_length=45, blank=True)
    action = models.CharField(max_length=16, db_index=True)
    method = models.CharField(max_length=16, blank=True)
    path = models.CharField(max_length=500, blank=True)
    status = models.IntegerField(null=True)
    level = models.CharField(max_length=8, blank=True)
    resource = models.CharField(max_length=128, blank=True, db_index=True)
    details = models.JSONField(default=dict)
    node = models.CharField(max_length=128, blank=True)

    class Meta:
        db_table = "audit_event"


class ApiToken(models.Model):
    """A bearer token of a user, for scripts: `Authorization: Bearer pacs_<prefix>_<secret>`.
    Only the SHA-256 of the secret is kept."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=12, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True)
    revoked_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "api_token"
