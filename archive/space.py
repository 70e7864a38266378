"""Free space: stores stop before the disk is full, and deleting works when it is.

A store is refused (StorageFull: 507 over HTTP, 0xA700 over DICOM) while the
storage area has less than PACS_MIN_FREE_MB free, and /readyz says so, so the
load balancer sends work elsewhere. Something else may still fill the disk: on a
single node the SQLite database shares it, and SQLite needs a little room to
write even a DELETE (its write-ahead log grows first), which failed with
"database or disk is full" and left no way to free space through pacsweb. So a
reserve file of PACS_DISK_RESERVE_MB is kept beside the database while there is
room; a request that finds the disk (nearly) full gives it back before it opens
a database connection (pacsweb/limits.py), and a delete that still fails for want
of space gives it back and runs again. It is made again by a later store once the
space is there.
"""

import logging
import os
import shutil
import threading
from pathlib import Path

from django.conf import settings
from django.db import connection

from archive.errors import StorageError
from archive.storage import get_storage

log = logging.getLogger(__name__)

RESERVE_NAME = "disk-reserve"
_lock = threading.Lock()


class StorageFull(StorageError):
    """The storage area is below its free-space threshold: stores are refused."""


def free_bytes(path=None):
    return shutil.disk_usage(path or get_storage().root).free


def shortage():
    """Why the storage area takes no more stores, or None while it has room."""
    try:
        free = free_bytes()
    except OSError as error:
        return f"the storage area cannot be measured: {error.strerror or error}"
    if free < settings.MIN_FREE_BYTES:
        return (f"the storage area has {free // 2**20} MB free, below PACS_MIN_FREE_MB "
                f"({settings.MIN_FREE_BYTES // 2**20} MB): stores are refused until space is freed")
    return None


def check_room():
    """Raise StorageFull while the storage area is below its threshold; else keep the
    database's reserve in place (when it is missing and there is room for it)."""
    reason = shortage()
    if reason:
        raise StorageFull(reason)
    ensure_reserve()


def _reserve_path():
    return Path(settings.DATA_DIR) / RESERVE_NAME


def _needs_reserve():
    # Only a database on our own disk needs it; PostgreSQL keeps its space elsewhere.
    return connection.vendor == "sqlite" and settings.DISK_RESERVE_BYTES > 0


def ensure_reserve():
    if not _needs_reserve():
        return
    path = _reserve_path()
    if path.exists():
        return
    with _lock:
        if path.exists() or free_bytes(path.parent) < settings.DISK_RESERVE_BYTES + settings.MIN_FREE_BYTES:
            return
        temp = path.with_name(RESERVE_NAME + ".part")
        try:
            with open(temp, "wb") as out:
                # Written, not sparse (truncate() would reserve nothing).
                block = bytes(1024 * 1024)
                for _ in range(settings.DISK_RESERVE_BYTES // len(block)):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except OSError as error:
            temp.unlink(missing_ok=True)
            log.warning("cannot write the disk reserve %s: %s", path, error)


# Below this much free space the database itself may fail to open a connection
# (SQLite: "disk I/O error" setting up its log), before any view runs.
NEARLY_FULL = 1024 * 1024


def release_if_full():
    """Give the reserve back when the database's disk is (nearly) full, before the
    request needs a connection: a DELETE must be able to authenticate and run."""
    if not _needs_reserve():
        return False
    try:
        if free_bytes(settings.DATA_DIR) >= NEARLY_FULL:
            return False
    except OSError:
        return False
    return release_reserve()


def release_reserve():
    """Give the reserve back to the filesystem; True when there was one."""
    try:
        _reserve_path().unlink()
    except FileNotFoundError:
        return False
    log.warning("the disk is full: the reserve of %d MB is released so that deleting can proceed",
                settings.DISK_RESERVE_BYTES // 2**20)
    return True


def is_disk_full(error):
    """Whether a database or file error means the disk has no room (SQLITE_FULL, ENOSPC)."""
    if isinstance(error, OSError) and error.errno == 28:
        return True
    text = str(error).lower()
    return "disk is full" in text or "no space left" in text
