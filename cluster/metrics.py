"""/metrics in Prometheus's text format, for the whole cluster.

Counters (stores, rejects, queries, replays, 503s) are kept in one Redis hash
shared by every process of every node, so any node answers the cluster's
totals; the gauges (instances, outbox, queues, jobs, job durations) are read
from the database and the queues when scraped. A counter that cannot be written
(Redis away) is lost, never an error: metrics must not fail the work they count.

A process adds up its counts and sends them in one round trip every
FLUSH_SECONDS (a round trip per store was a thirtieth of its CPU): the cluster's
totals lag by at most that, and a process that crashes loses at most that much
of its counts (one that exits sends them first).
"""

import collections
import logging

from django.conf import settings
from django.db.models import Count, Sum

from archive.batches import ProcessBatch
from archive.models import FileDeletion, Instance, Patient, Series, Study
from cluster.jobs import queue, redis_connection
from cluster.models import Job, NodeProcess

log = logging.getLogger("pacsweb.metrics")

HELP = {
    "pacs_instances_stored_total": "Instances stored, by origin (RestApi, DicomProtocol, DicomWeb...).",
    "pacs_instances_already_stored_total": "Instances received again (AlreadyStored), by origin.",
    "pacs_instances_rejected_total": "Instances refused (not DICOM, truncated, invalid UID, conflicting...), by origin.",
    "pacs_queries_total": "Queries answered by the index, by level.",
    "pacs_transaction_replays_total": "Transactions replayed after a concurrency conflict.",
    "pacs_database_busy_total": "Units of work that gave up after PACS_TX_RETRIES replays (HTTP 503, DICOM 0xA700).",
}


def _key():
    return f"{settings.QUEUE_PREFIX}:metrics"


FLUSH_SECONDS = 1.0


def count(name, amount=1, **labels):
    field = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    with _pending.adding() as counts:
        counts[field] += amount


def _send(batch):
    try:
        pipe = redis_connection().pipeline(transaction=False)
        for field, amount in batch.items():
            pipe.hincrby(_key(), field, amount)
        pipe.execute()
    except Exception as error:
        log.debug("metrics %s not counted: %s", ", ".join(batch), error)


_pending = ProcessBatch("metrics-flush", _send, lambda: FLUSH_SECONDS, empty=collections.Counter)


def flush():
    """Send this process's counts to the cluster's hash now."""
    _pending.flush()


def count_signal(sender, name, amount, labels, **kwargs):
    """Receiver of archive.signals.counted: the core's counts go to the cluster's hash."""
    count(name, amount, **labels)


def render():
    """The exposition text."""
    lines = []

    def metric(name, kind, help_text, samples):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {value}")

    flush()
    try:
        counters = {k.decode(): int(v) for k, v in redis_connection().hgetall(_key()).items()}
    except Exception:
        counters = {}
    for name, help_text in HELP.items():
        samples = [(field[len(name):], value) for field, value in sorted(counters.items())
                   if field == name or field.startswith(name + "{")]
        metric(name, "counter", help_text, samples or [("", 0)])

    for name, model in (("patients", Patient), ("studies", Study), ("series", Series), ("instances", Instance)):
        metric(f"pacs_{name}", "gauge", f"{name.capitalize()} in the index.", [("", model.objects.count())])
    metric("pacs_deletion_outbox", "gauge", "Deleted files waiting to be removed from the storage.",
           [("", FileDeletion.objects.count())])
    depths = []
    for kind in settings.QUEUES:
        try:
            depths.append((f'{{queue="{kind}"}}', queue(kind).count))
        except Exception:
            pass
    metric("pacs_queue_depth", "gauge", "Tasks waiting in each RQ queue.", depths)
    states = Job.objects.values("type", "state").annotate(n=Count("id"))
    metric("pacs_jobs", "gauge", "Jobs in the history, by type and state.",
           [(f'{{type="{row["type"]}",state="{row["state"]}"}}', row["n"]) for row in states])
    durations = Job.objects.filter(completed_at__isnull=False).values("type").annotate(
        total=Sum("runtime"), n=Count("id"))
    metric("pacs_job_duration_seconds_sum", "counter", "Run time of the finished jobs in the history, by type.",
           [(f'{{type="{row["type"]}"}}', round(row["total"] or 0, 3)) for row in durations])
    metric("pacs_job_duration_seconds_count", "counter", "Finished jobs in the history, by type.",
           [(f'{{type="{row["type"]}"}}', row["n"]) for row in durations])
    metric("pacs_node_processes", "gauge", "Processes in the node registry, by node and kind.",
           [(f'{{node="{row["node"]}",kind="{row["kind"]}"}}', row["n"])
            for row in NodeProcess.objects.values("node", "kind").annotate(n=Count("key"))])
    return "\n".join(lines) + "\n"
