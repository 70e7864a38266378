"""A job worker: django-rq's rqworker on this cluster's queues.

Jobs run in the worker process itself (SimpleWorker), not in a forked child:
when the worker dies its job's heartbeat stops with it, and the housekeeper
re-queues or fails the job.
"""

import logging

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from cluster import registry
from cluster.jobs import queue


def queue_depths():
    try:
        return {kind: queue(kind).count for kind in settings.QUEUES}
    except Exception:  # Redis away: the registry row says so by an empty map
        return {}


class Command(BaseCommand):
    help = "Run a job worker on the cluster's queues (rqworker with PACS_QUEUE_PREFIX's queue names)."

    def add_arguments(self, parser):
        parser.add_argument("--burst", action="store_true", help="exit once the queues are empty")

    def handle(self, *args, burst, **options):
        registry.start_heartbeat("worker", queues=queue_depths)
        # rqworker sets up its own log handler, at INFO unless told verbosity 0:
        # PACS_LOG_LEVEL=WARNING (what `make run` gives its terminal) silences it too.
        quiet = logging.getLogger().getEffectiveLevel() >= logging.WARNING
        call_command("rqworker", *settings.QUEUES.values(), worker_class="rq.worker.SimpleWorker", burst=burst,
                     verbosity=0 if quiet else 1)
