"""The storage area: the only code that knows where bytes live.

Keys are random UUIDs spread over two levels of folders (`ab/cd/abcd…`), so no
folder grows past 65,536 entries per level and any node can write without asking
another. A write goes to a temporary name in the same filesystem, is renamed to its
key, then fsynced with the folder that holds the name, before the index names the
key: a crash never loses a stored file's bytes or name, and never leaves a half
file under a key the index names (at worst an orphan, which is removed). The root may
be a shared mount (NFS, SMB, CephFS) that every node of a cluster sees.
"""

import contextlib
import errno
import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from archive.errors import MissingFile, StorageError  # noqa: F401 (raised here, caught by name)

CHUNK = 1024 * 1024
TEMP_DIR = "tmp"
TEMP_SUFFIX = ".part"
# Asynchronous archives, beside the DICOM files so that every node sees them.
ARCHIVE_DIR = "archives"
KEY = re.compile(r"[0-9a-f]{32}\Z")


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    md5: str


def _missing_folders(folder, root):
    """The folders between `root` and `folder` (itself included) that do not exist yet."""
    missing = []
    while folder != root and not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def _fsync_folder(path):
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        # A filesystem that cannot sync a folder (some network mounts) says so:
        # its own guarantees are all there is.
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(descriptor)


class FileSystemStorage:
    def __init__(self, root, fsync=True):
        self.root = Path(root)
        self._root = str(self.root)
        self._temp = str(self.root / TEMP_DIR)
        self.fsync = fsync
        (self.root / TEMP_DIR).mkdir(parents=True, exist_ok=True)
        (self.root / ARCHIVE_DIR).mkdir(parents=True, exist_ok=True)

    def put(self, source):
        """Store bytes or a binary file object (read from its current position); return StoredFile."""
        key = uuid.uuid4().hex
        # Paths as strings: pathlib's joins were a twentieth of a small store's CPU.
        temp = os.path.join(self._temp, key + TEMP_SUFFIX)
        final = self._file(key)
        folder = os.path.dirname(final)
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        written = temp
        try:
            with open(temp, "wb") as out:
                if isinstance(source, (bytes, bytearray, memoryview)):
                    out.write(source)
                    digest.update(source)
                    size = len(source)
                else:
                    while chunk := source.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                out.flush()
                try:
                    os.rename(temp, final)
                    created = ()
                except FileNotFoundError:
                    created = _missing_folders(folder, self._root)
                    os.makedirs(folder, exist_ok=True)
                    os.rename(temp, final)
                written = final
                if self.fsync:
                    # The bytes, the name and any folder made for it must outlast a
                    # crash before the index commits the instance (PostgreSQL may be on
                    # another host, whose commit orders nothing on this filesystem).
                    # Renamed first, then synced: a journalling filesystem commits the
                    # bytes and the name at once, and the folder's sync finds nothing
                    # left to write. A crash before the sync leaves at worst a file the
                    # index never named: an orphan, removed after PACS_ORPHAN_GRACE.
                    os.fsync(out.fileno())
                    for path in (folder, *(os.path.dirname(made) for made in created)):
                        _fsync_folder(path)
        except OSError as error:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(written)
            raise StorageError(f"cannot write to the storage area: {error.strerror or error}") from error
        return StoredFile(key=key, size=size, md5=digest.hexdigest())

    def open(self, key):
        """A binary file object positioned at the start of the stored file."""
        try:
            return open(self._file(key), "rb")
        except FileNotFoundError as error:
            raise MissingFile(key) from error

    def delete(self, key):
        """Remove the file; a key already gone is not an error (deletes are re-driven)."""
        self._path(key).unlink(missing_ok=True)

    def exists(self, key):
        return self._path(key).is_file()

    def size(self, key):
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as error:
            raise MissingFile(key) from error

    def keys(self, older_than=None):
        """Every stored key (optionally only those written more than `older_than` seconds ago)."""
        limit = None if older_than is None else time.time() - older_than
        for first in _subdirs(self.root):
            for second in _subdirs(first):
                with os.scandir(second) as entries:
                    for entry in entries:
                        if not entry.is_file() or entry.name.endswith(TEMP_SUFFIX):
                            continue
                        if limit is None or entry.stat().st_mtime < limit:
                            yield entry.name

    def remove_stale_temporaries(self, older_than):
        """Remove temporary files that a crashed write left behind; return how many."""
        limit = time.time() - older_than
        removed = 0
        with os.scandir(self.root / TEMP_DIR) as entries:
            for entry in entries:
                if entry.is_file() and entry.stat().st_mtime < limit:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
        return removed

    # --- the archive area: files produced by jobs, named by their owner --------

    def archive_writer(self, name):
        """(a file open for writing under a temporary name, publish()): publish()
        makes the complete file visible under `name` (fsynced, renamed)."""
        final = self._archive_path(name)
        temp = final.with_name(final.name + TEMP_SUFFIX)
        out = open(temp, "wb")

        def publish():
            out.flush()
            if self.fsync:
                os.fsync(out.fileno())
            out.close()
            os.rename(temp, final)
            return final.stat().st_size

        return out, publish

    def discard_archive(self, name):
        """Remove an archive and its temporary file, if any."""
        final = self._archive_path(name)
        final.unlink(missing_ok=True)
        final.with_name(final.name + TEMP_SUFFIX).unlink(missing_ok=True)

    def open_archive(self, name):
        try:
            return open(self._archive_path(name), "rb")
        except FileNotFoundError as error:
            raise MissingFile(name) from error

    def archive_files(self):
        """(name, partial, age in seconds) of every file in the archive area."""
        now = time.time()
        with os.scandir(self.root / ARCHIVE_DIR) as entries:
            for entry in entries:
                if entry.is_file():
                    partial = entry.name.endswith(TEMP_SUFFIX)
                    name = entry.name[: -len(TEMP_SUFFIX)] if partial else entry.name
                    yield name, partial, now - entry.stat().st_mtime

    def _archive_path(self, name):
        if not name or "/" in name or name.startswith(".") or name.endswith(TEMP_SUFFIX):
            raise MissingFile(name)
        return self.root / ARCHIVE_DIR / name

    def _path(self, key):
        return Path(self._file(key))

    def _file(self, key):
        if len(key) != 32 or not KEY.match(key):
            raise MissingFile(key)
        return f"{self._root}/{key[0:2]}/{key[2:4]}/{key}"


def _subdirs(path):
    with os.scandir(path) as entries:
        return sorted(Path(e.path) for e in entries if e.is_dir() and len(e.name) == 2)


_storage = None


def get_storage():
    """The storage area configured by PACS_STORAGE_DIR (one instance per process)."""
    global _storage
    if _storage is None or _storage.root != settings.STORAGE_DIR:
        _storage = FileSystemStorage(settings.STORAGE_DIR, fsync=settings.STORAGE_FSYNC)
    return _storage


def intact(storage, key, md5):
    """Whether the stored file exists and has the MD5 computed when it was stored (read in chunks)."""
    if not storage.exists(key):
        return False
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with storage.open(key) as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
    except (StorageError, OSError):
        return False
    return digest.hexdigest() == md5
