"""Past the replay bound the answer is 503 with Retry-After, and nothing is half-written."""

import sqlite3
import time

from tests import servers
from tests.dicomgen import make_instance


def test_locked_database_gives_503_with_retry_after_and_leaves_no_file(server_factory):
    server = server_factory(database="sqlite", PACS_SQLITE_TIMEOUT="0.2", PACS_TX_RETRIES="2", workers=1)
    blocker = sqlite3.connect(server.data_dir / "pacsweb.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        started = time.monotonic()
        status, headers, body = servers.request(server.url + "/instances", method="POST", body=make_instance())
        elapsed = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert b"busy" in body
    assert elapsed >= 0.6  # three attempts of 0.2 s each: it did replay
    assert server.storage_files() == []
    assert server.temporary_files() == []

    # Once the other writer is gone, the same request succeeds.
    status, _, body = servers.request(server.url + "/instances", method="POST", body=make_instance())
    assert status == 200
    assert server.sql("SELECT count(*) FROM instance") == [(1,)]
    assert len(server.storage_files()) == 1
