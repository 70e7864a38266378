"""The audit rows of reads and searches wait in their process for PACS_AUDIT_READ_DELAY
seconds, then go together (archive/audit.py): the bound on what a crash loses, which
README.md and docs/architecture.md state, is that delay; a process that exits, a web
server stopped, writes its own first.

Each test runs processes of its own on a database of its own (the suite's PostgreSQL),
as a node does."""

import json
import subprocess
import sys

import psycopg

from tests import servers

PROGRAM = """
import json, os, signal, sys, time
import django
django.setup()
from archive import audit
from archive.models import AuditEvent

def rows():
    return sorted(AuditEvent.objects.values_list("resource", flat=True))

def read(resource):
    audit.record("user", "reader", "read", method="GET", path=f"/studies/{resource}", status=200,
                 level="Study", resource=resource)

audit.record("user", "reader", "query", method="GET", path="/dicom-web/studies", status=200)
read("first")
read("second")
report = {"at_once": rows()}
waited = time.monotonic()
while len(rows()) < 3 and time.monotonic() - waited < 30:
    time.sleep(0.05)
report["after_the_delay"] = rows()
print(json.dumps(report), flush=True)
read("third")
if sys.argv[1] == "crash":
    os.kill(os.getpid(), signal.SIGKILL)
"""


def run(how, delay, tmp_path):
    env = servers.base_env(tmp_path, DJANGO_SETTINGS_MODULE="pacsweb.settings",
                           DATABASE_URL=servers.create_database(), PACS_AUDIT_READ_DELAY=delay)
    done = subprocess.run([sys.executable, "-c", PROGRAM, how], env=env, cwd=servers.REPO, capture_output=True,
                          text=True, timeout=120)
    report = json.loads(done.stdout.strip().splitlines()[0])
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        report["in_the_end"] = sorted(r[0] for r in conn.execute("SELECT resource FROM audit_event"))
    return done.returncode, report


def test_the_rows_of_reads_wait_for_the_delay_and_a_crash_loses_only_the_last_ones(tmp_path):
    returncode, report = run("crash", 0.5, tmp_path)
    assert returncode == -9
    assert report["at_once"] == []  # none written in its request
    assert report["after_the_delay"] == ["", "first", "second"]  # the search's row names no resource
    # Killed within the delay of its last read: that row is lost, none older.
    assert report["in_the_end"] == ["", "first", "second"]


def test_a_process_that_exits_writes_its_waiting_rows_first(tmp_path):
    returncode, report = run("exit", 3600, tmp_path)
    assert returncode == 0
    assert report["after_the_delay"] == []
    assert report["in_the_end"] == ["", "first", "second", "third"]


def test_a_web_server_stopped_writes_the_rows_of_its_reads_and_searches(server_factory):
    server = server_factory(PACS_AUDIT_READ_DELAY=3600)
    for path in ("/dicom-web/studies?PatientID=nobody", "/studies?expand"):
        assert servers.request(server.url + path)[0] == 200
    assert server.sql("SELECT count(*) FROM audit_event WHERE action = 'query'") == [(0,)]
    server.stop()
    rows = server.sql("SELECT method, path, status FROM audit_event WHERE action = 'query' ORDER BY path")
    assert rows == [("GET", "/dicom-web/studies", 200), ("GET", "/studies", 200)]


def test_the_trail_read_through_a_process_holds_that_processs_waiting_rows(server_factory):
    server = server_factory(PACS_AUDIT_READ_DELAY=3600)  # one process
    assert servers.request(server.url + "/dicom-web/studies?PatientID=nobody")[0] == 200
    status, trail = servers.request_json(server.url + "/audit?action=query")
    assert status == 200 and [row["Path"] for row in trail] == ["/dicom-web/studies"], json.dumps(trail)[:500]
