"""The one transaction helper: run a unit of work, replay it on a concurrency conflict.

Like Orthanc's StatelessDatabaseOperations::Apply, a unit of work is a callable
handed to one runner that opens the outermost transaction, runs it, and runs it
again when the database says that a concurrent transaction got in the way. Nobody
else retries. Because a unit may run several times it must touch nothing outside
the database: files are written before it, and removed after a final failure.
"""

import contextlib
import datetime
import errno
import functools
import logging
import os
import random
import re
import time

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, OperationalError, connection, connections, transaction
from django.utils.dateparse import parse_datetime

from archive.errors import DatabaseBusy, UnsyncedCommit  # noqa: F401 (raised here, caught by name)
from archive import signals


log = logging.getLogger(__name__)

# PostgreSQL SQLSTATEs that a replay can cure: serialization_failure,
# deadlock_detected, and unique_violation from two transactions inserting the
# same key (the loser sees the winner's row when it runs again).
RETRYABLE_SQLSTATES = {"40001", "40P01", "23505"}
# The connection was lost: the server restarted or failed over (57P01-57P03), or
# the socket broke (class 08). Nothing of the unit was committed; it runs again
# on a new connection. Pooled connections are not checked before each use (that
# check is a round trip per request): this replay is what makes a restart of the
# database cost no failed store.
LOST_CONNECTION_SQLSTATES = {"57P01", "57P02", "57P03"}
# Orthanc waits 100 ms more at each retry; the jitter keeps replaying writers
# from colliding again in lockstep.
BACKOFF_STEP = 0.05
BACKOFF_MAX = 1.0


class Retry(Exception):
    """Raised by a unit of work that saw a state only a concurrent writer explains."""


def is_lost_connection(error):
    if connection.vendor != "postgresql" or not isinstance(error, DatabaseError):
        return False
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in LOST_CONNECTION_SQLSTATES or sqlstate.startswith("08")
    raw = connection.connection
    return isinstance(error, OperationalError) and (raw is None or raw.closed or raw.broken)


def is_conflict(error):
    if isinstance(error, Retry):
        return True
    if not isinstance(error, DatabaseError):
        return False
    cause = error.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in RETRYABLE_SQLSTATES
    if connection.vendor == "sqlite" and isinstance(error, OperationalError):
        message = str(error).lower()
        return "database is locked" in message or "database table is locked" in message
    return False


def run(unit, *args, retries=None, one_statement=False, **kwargs):
    """Run unit(*args, **kwargs) in its own transaction and return what it returns.

    Replays on conflict with a growing, jittered backoff; raises DatabaseBusy when
    the conflicts outlast `retries` (default PACS_TX_RETRIES). Any other error
    propagates at once, with the transaction rolled back.

    A unit that sends exactly one statement says so with `one_statement`: it runs
    without BEGIN and COMMIT, the statement being a transaction by itself (two
    round trips of three saved), and is replayed alike.
    """
    retries = settings.TX_RETRIES if retries is None else retries
    synced_after = connection.vendor == "sqlite" and settings.STORAGE_FSYNC and not connection.in_atomic_block
    attempt = 0
    while True:
        try:
            if synced_after:
                # SQLite holds its one write lock until a commit returns. Synced inside the
                # commit (synchronous=FULL, the connection's setting outside the runner),
                # every writer of the node queued behind each sync in turn; committed
                # unsynced and synced by _sync_wal() once the lock is free, the syncs of
                # concurrent writers overlap (-15 % stores per second at 4 clients
                # otherwise, docs/benchmarks.md). A commit is visible to readers for the
                # length of that sync before it is on disk: nothing is acknowledged before it is.
                with unsynced(), transaction.atomic(durable=True):
                    result = unit(*args, **kwargs)
                break
            if one_statement and connection.get_autocommit() and not connection.in_atomic_block:
                return unit(*args, **kwargs)
            with transaction.atomic(durable=True):
                return unit(*args, **kwargs)
        except (DatabaseError, Retry) as error:
            if is_lost_connection(error):
                # Back to the pool, which drops it: the replay takes a live one.
                connection.close()
            elif not is_conflict(error):
                raise
            attempt += 1
            if attempt > retries:
                log.warning("%s gave up after %d replays: %s", _name(unit), retries, error)
                signals.count("pacs_database_busy_total")
                raise DatabaseBusy(str(error)) from error
            signals.count("pacs_transaction_replays_total")
            delay = min(BACKOFF_MAX, BACKOFF_STEP * attempt) * random.uniform(0.5, 1.5)
            log.info("%s conflicted (%s), replay %d in %.0f ms", _name(unit), _short(error), attempt, delay * 1000)
            time.sleep(delay)
    _sync_wal()
    return result


@contextlib.contextmanager
def unsynced():
    """On SQLite (with PACS_STORAGE_FSYNC), what commits inside does not wait for the
    disk: it gets there with the next synced commit on the node, which the runner makes
    after every unit (_sync_wal) and the housekeeper at least every
    PACS_HOUSEKEEPER_INTERVAL. Elsewhere, nothing changes."""
    if connection.vendor != "sqlite" or not settings.STORAGE_FSYNC or connection.in_atomic_block:
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    raw.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        try:
            raw.execute("PRAGMA synchronous=FULL")
        except Exception:
            # A connection left at NORMAL would commit later writes unsynced: drop it.
            connection.close()
            raise


def _sync_wal():
    """Sync SQLite's write-ahead log: every frame committed so far, the last unit's
    included, is on the disk when this returns. A frame gone from the log was
    checkpointed into the database file, which SQLite syncs before it reuses or
    removes the log."""
    try:
        descriptor = os.open(f"{connection.settings_dict['NAME']}-wal", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fdatasync(descriptor)
    except OSError as error:
        if error.errno in (errno.EINVAL, errno.ENOTSUP):
            return  # a filesystem that cannot sync: its own guarantees are all there is
        raise UnsyncedCommit(f"the index's commit could not be synced to the disk: {error.strerror}") from error
    finally:
        os.close(descriptor)


def statements():
    """A cursor for the archive's own SQL (written with %s markers). On SQLite the
    database's own cursor: Django's wrapper (each statement's markers rewritten by
    a regular expression, its timing and bookkeeping) was 7 % of a store's index
    write of a dozen statements. Its translation of the driver's errors into
    Django's, which the runner's replays look for, is kept."""
    # The thread's connection, looked up once: each attribute read through
    # django.db.connection looks it up again (a context-local lookup, ~3 us).
    current = connections[DEFAULT_DB_ALIAS]
    if current.vendor != "sqlite":
        return current.cursor()
    current.ensure_connection()
    return _SQLiteStatements(current.connection.cursor(), current.wrap_database_errors)


class _SQLiteStatements:
    def __init__(self, cursor, wrap_database_errors):
        self.cursor = cursor
        self.wrap_database_errors = wrap_database_errors

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cursor.close()

    def execute(self, sql, params=()):
        with self.wrap_database_errors:
            return self.cursor.execute(_qmark(sql), params)

    def executemany(self, sql, param_list):
        with self.wrap_database_errors:
            return self.cursor.executemany(_qmark(sql), param_list)

    def fetchone(self):
        return self.cursor.fetchone()

    def fetchall(self):
        return self.cursor.fetchall()


@functools.lru_cache(maxsize=1024)
def _qmark(sql):
    # As Django's SQLite backend rewrites it (a "%%" is a literal "%"), once per text.
    return _MARKER.sub("?", sql).replace("%%", "%")


_MARKER = re.compile(r"(?<!%)%s")


def insert_unless_exists(cursor, model, conflict, **values):
    """INSERT a row unless one with the same `conflict` key exists; its id, or None.

    ON CONFLICT DO NOTHING lets concurrent writers of one key meet without an
    error: the loser learns it lost from the missing id, without a unique
    violation aborting its transaction (PostgreSQL and SQLite alike).
    """
    columns = ", ".join(values)
    markers = ", ".join(["%s"] * len(values))
    cursor.execute(
        f"INSERT INTO {model._meta.db_table} ({columns}) VALUES ({markers}) "
        f"ON CONFLICT ({conflict}) DO NOTHING RETURNING id",
        list(values.values()),
    )
    row = cursor.fetchone()
    return row[0] if row else None


def _name(unit):
    return getattr(unit, "__qualname__", repr(unit))


def _short(error):
    return str(error).splitlines()[0][:120] if str(error) else type(error).__name__


def datetime_value(value):
    """An aware datetime from a date-time column read by plain SQL: SQLite gives the
    naive UTC text Django wrote (USE_TZ), PostgreSQL an aware datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value
