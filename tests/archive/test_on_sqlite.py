"""The suite's database is PostgreSQL; the archive's tests that hold on both databases
run again here against SQLite (the embedded default), in a process of their own: the
search engine (each shape's compiled statement, SQLite's case-insensitive LIKE), the
store, the reads and the accounts (their plain SQL through SQLite's own cursor)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ON_BOTH = ["tests/archive/test_query_statements.py", "tests/archive/test_query.py", "tests/archive/test_ingest.py",
           "tests/archive/test_db_statements.py", "tests/archive/test_resources.py", "tests/archive/test_users.py",
           "tests/archive/test_audit.py"]


@pytest.mark.skipif(os.environ.get("PACS_TEST_ON_SQLITE") == "1", reason="this is the SQLite run")
def test_the_archives_tests_hold_on_sqlite_too():
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PACS_TEST_ON_SQLITE"] = "1"
    root = Path(__file__).parents[2]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ON_BOTH],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "failed" not in run.stdout and "error" not in run.stdout.lower()
