"""A process's counts reach the cluster's hash within FLUSH_SECONDS, and a process
that exits sends its own first (cluster/metrics.py: the bound on what is lost)."""

import os
import subprocess
import sys
import uuid

from cluster import metrics
from cluster.jobs import redis_connection
from tests.waiting import wait_for


def _total(field):
    value = redis_connection().hget(metrics._key(), field)
    return int(value) if value else 0


def test_counts_reach_the_cluster_within_the_flush_interval(settings):
    settings.QUEUE_PREFIX = f"metrics-{uuid.uuid4().hex}"
    for _ in range(5):
        metrics.count("pacs_test_total", origin="here")
    wait_for(lambda: _total('pacs_test_total{origin="here"}') == 5, timeout=metrics.FLUSH_SECONDS * 5,
             what="the counts in Redis")
    assert _total('pacs_test_total{origin="here"}') == 5


def test_a_process_that_exits_sends_its_counts_first():
    prefix = f"metrics-{uuid.uuid4().hex}"
    program = ("import django; django.setup(); from cluster import metrics; "
               "metrics.FLUSH_SECONDS = 3600; metrics.count('pacs_test_total', 3)")
    subprocess.run([sys.executable, "-c", program], check=True, timeout=120,
                   env={**os.environ, "PACS_QUEUE_PREFIX": prefix, "DJANGO_SETTINGS_MODULE": "pacsweb.settings"})
    value = redis_connection().hget(f"{prefix}:metrics", "pacs_test_total")
    assert value is not None and int(value) == 3
