"""On the embedded SQLite database a unit's commit is on the disk before the runner
returns, synced once the write lock is free; a commit whose sync fails keeps its file.

Each test runs a process of its own on a fresh SQLite archive (the suite's database is
PostgreSQL) and reads what that process reports."""

import json
import subprocess
import sys

from tests import servers
from tests.dicomgen import make_instance

PROLOGUE = """
import json, os, sqlite3, sys
import django
django.setup()
from django.core.management import call_command
from django.db import connection
call_command("migrate", verbosity=0)
connection.ensure_connection()
DATABASE = str(connection.settings_dict["NAME"])

def synchronous():
    return connection.connection.execute("PRAGMA synchronous").fetchone()[0]

def write_lock_is_free():
    other = sqlite3.connect(DATABASE, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()

syncs = []
real_fdatasync = os.fdatasync

def fdatasync(descriptor):
    syncs.append({"file": os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")),
                  "lock_free": write_lock_is_free()})
    return real_fdatasync(descriptor)

os.fdatasync = fdatasync
"""

RUNNER = PROLOGUE + """
from archive import db
report = {"default": synchronous()}

def unit():
    report["in_a_unit"] = synchronous()
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO label (level, resource_id, name) VALUES ('Study', 'x', 'sync')")

db.run(unit)
report["after"] = synchronous()
report["syncs"] = list(syncs)

def failing():
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO label (level, resource_id, name) VALUES ('Study', 'y', 'sync')")
    raise ValueError("a bug in the unit")

try:
    db.run(failing)
except ValueError:
    pass
report["after_a_failure"] = synchronous()
report["syncs_in_all"] = len(syncs)
print(json.dumps(report))
"""

READ_TRAIL = PROLOGUE + """
from archive import audit, db
from archive.models import AuditEvent
from cluster.management.commands import housekeeper
statements = db.statements
written_at = []  # the connection's synchronous setting as each audit row is inserted

class Watched:
    def __init__(self, cursor):
        self.cursor = cursor
    def __enter__(self):
        self.cursor.__enter__()
        return self
    def __exit__(self, *exc):
        return self.cursor.__exit__(*exc)
    def execute(self, sql, params=()):
        if sql.startswith("INSERT INTO audit_event"):
            written_at.append(synchronous())
        return self.cursor.execute(sql, params)
    def __getattr__(self, name):
        return getattr(self.cursor, name)

db.statements = lambda: Watched(statements())
audit.record("user", "reader", "query", method="GET", path="/dicom-web/studies", status=200)
audit.record("user", "reader", "read", method="GET", path="/studies/x", status=200, level="Study", resource="x")
audit.record("user", "admin", "configure", method="PUT", path="/modalities/m", status=200)
report = {"rows_before_the_flush": AuditEvent.objects.count()}
audit.flush()
report.update(rows=AuditEvent.objects.count(), written_at=written_at, syncs=len(syncs), after=synchronous())
housekeeper.run_pass()
report["wal_synced_by_a_housekeeper_pass"] = [s["file"] for s in syncs][:1]
print(json.dumps(report))
"""

FAILING_SYNC = PROLOGUE + """
import errno
from archive import ingest
from archive.errors import UnsyncedCommit
from archive.models import Attachment, Instance
from archive.storage import get_storage

def broken(descriptor):
    raise OSError(errno.EIO, "Input/output error")

os.fdatasync = broken
try:
    ingest.store(open(sys.argv[1], "rb").read(), ingest.Origin("RestApi"))
    outcome = "acknowledged"
except UnsyncedCommit as error:
    outcome = f"UnsyncedCommit: {error}"
key = Attachment.objects.filter(name=Attachment.DICOM).values_list("storage_key", flat=True).first()
print(json.dumps({"outcome": outcome, "instances": Instance.objects.count(),
                  "file_kept": key is not None and get_storage().exists(key)}))
"""


def run(script, tmp_path, *args, **env):
    environment = servers.base_env(tmp_path / "data", DJANGO_SETTINGS_MODULE="pacsweb.settings", **env)
    environment.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=environment, cwd=servers.REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


FULL, NORMAL = 2, 1


def test_a_units_commit_is_synced_after_the_write_lock_is_released(tmp_path):
    report = run(RUNNER, tmp_path)
    # Writes outside the runner commit synced; a unit's commit leaves the sync to the
    # runner, which makes it with the lock free for the next writer.
    assert report["default"] == FULL
    assert report["in_a_unit"] == NORMAL
    assert report["after"] == report["after_a_failure"] == FULL
    assert report["syncs"] == [{"file": "pacsweb.sqlite3-wal", "lock_free": True}]
    assert report["syncs_in_all"] == 1  # nothing to sync for a unit that rolled back


def test_without_fsync_nothing_is_synced(tmp_path):
    report = run(RUNNER, tmp_path, PACS_STORAGE_FSYNC="false")
    assert report["default"] == report["in_a_unit"] == report["after"] == NORMAL
    assert report["syncs_in_all"] == 0


def test_the_rows_of_reads_wait_for_the_next_sync_which_a_housekeeper_pass_makes(tmp_path):
    # The bound docs/architecture.md states: a power cut takes back at most the read and
    # search rows of one PACS_HOUSEKEEPER_INTERVAL; any other row commits synced.
    report = run(READ_TRAIL, tmp_path)
    # The configuration's row at once, synced; the read and the search wait for the
    # process's next flush (tests/archive/test_audit_delay.py), then go in one statement.
    assert report["rows_before_the_flush"] == 1
    assert report["rows"] == 3 and report["written_at"] == [FULL, NORMAL]
    assert report["syncs"] == 0 and report["after"] == FULL
    assert report["wal_synced_by_a_housekeeper_pass"] == ["pacsweb.sqlite3-wal"]


def test_a_store_whose_commit_cannot_be_synced_fails_and_keeps_its_file(tmp_path):
    dicom = tmp_path / "in.dcm"
    dicom.write_bytes(make_instance())
    report = run(FAILING_SYNC, tmp_path, dicom)
    # Not acknowledged; but the index names the file, so it must stay.
    assert report["outcome"].startswith("UnsyncedCommit: the index's commit could not be synced")
    assert report["instances"] == 1
    assert report["file_kept"] is True
