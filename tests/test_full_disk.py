"""A full disk (a small tmpfs holding a single node's data: SQLite and storage):
stores are refused with a clear error, /readyz fails, DELETE still works and frees
space, and everything recovers once there is room again."""

import json
import os
import shutil
import subprocess

import pytest

from tests import servers
from tests.dicomgen import make_instance, uid
from tests.waiting import wait_for


@pytest.fixture
def disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path, leave):
    """Write zeros to `path` until `leave` bytes are free on its filesystem (0: full)."""
    with open(path, "ab") as out:
        while (free := shutil.disk_usage(path.parent).free) > leave:
            try:
                out.write(bytes(min(1024 * 1024, free - leave)))
                out.flush()
            except OSError:
                break


def readyz(server):
    return servers.request_json(server.url + "/readyz", auth=False)


def test_a_full_disk_refuses_stores_clearly_and_deleting_frees_it(disk, server_factory, worker_factory):
    server = server_factory("disk/node", database="sqlite", PACS_MIN_FREE_MB=8, PACS_DISK_RESERVE_MB=4)
    worker_factory(server)
    status, _, body = servers.request(server.url + "/instances", method="POST", body=make_instance(
        patient_id="FULL-1", sop_uid=uid("full", 1), rows=1024, columns=1024))
    assert status == 200, body[:300]
    patient = json.loads(body)["ParentPatient"]
    assert (server.data_dir / "disk-reserve").stat().st_size == 4 * 2**20  # kept for a delete on a full disk
    assert readyz(server)[0] == 200

    filler = disk / "filler"
    fill(filler, leave=6 * 2**20)  # below PACS_MIN_FREE_MB
    status, _, body = servers.request(server.url + "/instances", method="POST",
                                      body=make_instance(patient_id="FULL-2", sop_uid=uid("full", 2)))
    assert status == 507 and "PACS_MIN_FREE_MB" in json.loads(body)["Details"], body[:300]
    status, answer = readyz(server)
    assert status == 503 and "PACS_MIN_FREE_MB" in answer["problems"]["storage"]

    fill(filler, leave=0)  # nothing left at all: SQLite cannot even grow its log
    status, _, body = servers.request(server.url + f"/patients/{patient}", method="DELETE")
    assert status == 200, body[:300]
    assert not (server.data_dir / "disk-reserve").exists()  # given back for the delete
    wait_for(lambda: server.storage_files() == [], timeout=60, what="the worker removed the deleted file")
    assert servers.request_json(server.url + "/statistics")[1]["CountInstances"] == 0

    filler.unlink()
    wait_for(lambda: readyz(server)[0] == 200, timeout=30, what="/readyz recovered")
    status, _, body = servers.request(server.url + "/instances", method="POST",
                                      body=make_instance(patient_id="FULL-3", sop_uid=uid("full", 3)))
    assert status == 200, body[:300]
    assert (server.data_dir / "disk-reserve").exists()  # made again once there was room
