"""Cluster-wide state: jobs, leases and the node registry (DESIGN §7, §10).

Everything here lives in the database so that every node sees the same list.
"""

from django.db import models


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
