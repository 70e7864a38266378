"""The housekeeper: periodic tasks, each run by one node at a time.

Every node runs one (make run starts it); before a task runs, its node takes the
task's lease in the database for one period, so N nodes do the work once per
period, and when a node dies another takes over at the next period.
"""

import logging
import os
import signal
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection
from django.utils import timezone

from archive import deletion, stability
from archive.storage import get_storage
from cluster import jobs, registry, tasks
from cluster.models import Lease
from archive import db

log = logging.getLogger("pacsweb.housekeeper")


def _remove_old_files(directory, older_than):
    limit = time.time() - older_than
    removed = 0
    for entry in os.scandir(directory):
        if entry.is_file() and entry.stat().st_mtime < limit:
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


def reap_jobs():
    requeued, failed, redriven = jobs.reap()
    return requeued + failed + redriven


def remove_deleted_files():
    # Rows younger than this are the workers' (just queued); older ones were lost.
    return deletion.redrive(older_than=min(30, settings.HOUSEKEEPER_INTERVAL * 3))


def remove_stale_temporaries():
    return get_storage().remove_stale_temporaries(settings.ORPHAN_GRACE_SECONDS)


def remove_stale_uploads():
    return _remove_old_files(settings.FILE_UPLOAD_TEMP_DIR, settings.ORPHAN_GRACE_SECONDS)


# name, task, node-local (the lease is per node, not per cluster)
TASKS = [
    ("stability", stability.stabilize, False),
    ("jobs", reap_jobs, False),
    ("deletions", remove_deleted_files, False),
    ("archives", tasks.expire_archives, False),
    ("job-history", jobs.prune_history, False),
    ("storage-temporaries", remove_stale_temporaries, False),
    ("upload-temporaries", remove_stale_uploads, True),
    ("registry", registry.forget_dead, False),
]


def take_lease(name, seconds):
    """True when this node holds the lease `name` for the next `seconds`."""
    holder = jobs.worker_name()

    def unit():
        now = timezone.now()
        until = now + timezone.timedelta(seconds=seconds)
        moment = connection.ops.adapt_datetimefield_value(until)
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {Lease._meta.db_table} (name, holder, until) VALUES (%s, %s, %s) "
                           "ON CONFLICT (name) DO NOTHING", [name, holder, moment])
            if cursor.rowcount == 1:
                return True
        return Lease.objects.filter(name=name, until__lt=now).update(holder=holder, until=until) == 1

    return db.run(unit)


def run_pass(force=False):
    """Run every task whose lease this node gets (all of them with force); {name: count}."""
    done = {}
    for name, task, local in TASKS:
        lease = f"{name}@{settings.NODE_NAME}" if local else name
        try:
            if not force and not take_lease(lease, settings.HOUSEKEEPER_INTERVAL * 0.9):
                continue
            done[name] = task()
        except Exception:  # one failing task must not stop the others, nor the next pass
            log.exception("housekeeper task %s failed", name)
    return done


class Command(BaseCommand):
    help = "Run the periodic tasks (dead jobs, deferred file removal, archive expiry, temporaries) every PACS_HOUSEKEEPER_INTERVAL seconds."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true",
                            help="run every task once now, whatever other nodes do, and exit")

    def handle(self, *args, once, **options):
        if once:
            done = run_pass(force=True)
            self.stdout.write(", ".join(f"{name}: {count}" for name, count in done.items()))
            return
        registry.start_heartbeat("housekeeper")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        self.stdout.write(f"housekeeper of node {settings.NODE_NAME}: a pass every "
                          f"{settings.HOUSEKEEPER_INTERVAL:g} s")
        self.stdout.flush()
        while not stop.is_set():
            close_old_connections()
            done = run_pass()
            worked = {name: count for name, count in done.items() if count}
            if worked:
                log.info("housekeeper: %s", ", ".join(f"{name} {count}" for name, count in worked.items()))
            connection.close()
            stop.wait(settings.HOUSEKEEPER_INTERVAL)
