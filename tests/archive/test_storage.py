"""The storage area's writes outlast a crash: the file's bytes, its name, and the name
of any folder made for it are fsynced before put() returns (the index commits after);
a write that fails leaves nothing behind."""

import errno
import os
from types import SimpleNamespace

import pytest

from archive import storage
from archive.storage import FileSystemStorage


@pytest.fixture
def synced(monkeypatch):
    """The path of everything fsynced, in order, with the names a folder held at that moment."""
    calls = []
    real = os.fsync

    def fsync(descriptor):
        path = os.readlink(f"/proc/self/fd/{descriptor}")
        calls.append((path, sorted(os.listdir(path)) if os.path.isdir(path) else None))
        return real(descriptor)

    monkeypatch.setattr(storage.os, "fsync", fsync)
    return calls


def test_a_stored_files_bytes_and_name_are_synced_before_put_returns(tmp_path, synced, monkeypatch):
    area = FileSystemStorage(tmp_path)
    first = area.put(b"first")
    final = area._file(first.key)
    folder, parent = os.path.dirname(final), os.path.dirname(os.path.dirname(final))
    paths = [path for path, _ in synced]
    # The file under its key, then the folder holding the name, then the folders
    # holding the folders made for it (the area was empty).
    assert paths == [final, folder, parent, str(tmp_path)]
    assert first.key in synced[1][1]  # synced once the name was there
    synced.clear()
    monkeypatch.setattr(storage.uuid, "uuid4", lambda: SimpleNamespace(hex=first.key[:4] + "f" * 28))
    area.put(b"second")
    assert [path for path, _ in synced][1:] == [folder]  # its folders were there already


def test_without_fsync_nothing_is_synced(tmp_path, synced):
    FileSystemStorage(tmp_path, fsync=False).put(b"bytes")
    assert synced == []


def test_a_folder_that_cannot_be_synced_does_not_fail_the_write(tmp_path, monkeypatch):
    def refuse(descriptor):
        if os.path.isdir(os.readlink(f"/proc/self/fd/{descriptor}")):
            raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(storage.os, "fsync", refuse)
    area = FileSystemStorage(tmp_path)
    stored = area.put(b"bytes")
    with open(area._file(stored.key), "rb") as stored_file:
        assert stored_file.read() == b"bytes"


def test_a_failed_sync_leaves_no_file(tmp_path, monkeypatch):
    def broken(descriptor):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(storage.os, "fsync", broken)
    area = FileSystemStorage(tmp_path)
    with pytest.raises(storage.StorageError):
        area.put(b"bytes")
    assert [files for _, _, files in os.walk(tmp_path) if files] == []
