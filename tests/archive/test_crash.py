"""A crash between the file write and the commit loses nothing and leaks nothing."""

import subprocess
import sys

from tests import servers
from tests.dicomgen import make_instance

CRASHING_STORE = """
import os, sys
import django
django.setup()
from archive import ingest

def crash(*args, **kwargs):
    # The process dies after the file is in storage, before the index commits.
    os._exit(3)

ingest._index_instance = crash
ingest.store(open(sys.argv[1], "rb").read(), ingest.Origin("RestApi"))
"""


def test_crash_before_commit_leaves_no_index_row_and_an_orphan_the_reaper_removes(tmp_path, postgres_required):
    database_url = servers.create_database()
    env = servers.base_env(tmp_path, DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="pacsweb.settings")
    dicom = tmp_path / "in.dcm"
    dicom.write_bytes(make_instance())

    crashed = subprocess.run([sys.executable, "-c", CRASHING_STORE, str(dicom)], env=env, cwd=servers.REPO)
    assert crashed.returncode == 3

    storage = tmp_path / "storage"
    orphans = [p for p in storage.rglob("*") if p.is_file() and p.parent.name != "tmp"]
    assert len(orphans) == 1
    import psycopg

    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM instance").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM attachment").fetchone() == (0,)

    # Within the grace period the file may still belong to a store in flight.
    kept = servers.manage("remove_orphans", env=env)
    assert "removed 0 orphan" in kept.stdout
    assert orphans[0].exists()

    removed = servers.manage("remove_orphans", "--grace", "0", env=env)
    assert "removed 1 orphan" in removed.stdout
    assert not orphans[0].exists()


def test_reaper_keeps_files_that_are_indexed(server_factory):
    server = server_factory(database="postgres")
    status, _, _ = servers.request(server.url + "/instances", method="POST", body=make_instance())
    assert status == 200
    result = servers.manage("remove_orphans", "--grace", "0", env=server.env)
    assert "removed 0 orphan" in result.stdout
    assert len(server.storage_files()) == 1
