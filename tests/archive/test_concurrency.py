"""Many processes storing the same study at once: nothing lost, nothing doubled."""

import collections
import json
import multiprocessing
import zlib

import pytest

from tests import servers
from tests.dicomgen import make_instance, uid

PROCESSES = 6
PER_PROCESS = 30
SHARED = 10  # a third of each process's instances are SOP Instance UIDs every process sends

STUDY_UID = uid("concurrency", "study")
SERIES_UID = uid("concurrency", "series")


def instance_bytes(sop_key):
    return make_instance(
        patient_id="CONC-1", patient_name="RACE^CONDITION", study_uid=STUDY_UID, series_uid=SERIES_UID,
        sop_uid=uid("concurrency", sop_key), instance_number=zlib.crc32(sop_key.encode()) % 10000,
    )


def sender(args):
    """One OS process: wait for the others, then POST its 30 files one after another."""
    url, index, barrier = args
    keys = [f"own-{index}-{n}" for n in range(PER_PROCESS - SHARED)] + [f"shared-{n}" for n in range(SHARED)]
    # Interleave shared and own files, each process in its own order.
    keys.sort(key=lambda k: hash((k, index)))
    bodies = [instance_bytes(k) for k in keys]
    barrier.wait()
    answers = []
    for body in bodies:
        status, _, raw = servers.request(url + "/instances", method="POST", body=body,
                                         headers={"Content-Type": "application/dicom"})
        answers.append((status, json.loads(raw).get("Status") if status == 200 else raw.decode()[:300]))
    return answers


def store_from_processes(server):
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        with context.Pool(PROCESSES) as pool:
            results = pool.map(sender, [(server.url, i, barrier) for i in range(PROCESSES)])
    return [answer for answers in results for answer in answers]


@pytest.mark.parametrize("database,isolation", [("postgres", "read_committed"), ("postgres", "serializable"),
                                                ("sqlite", "read_committed")])
def test_six_processes_storing_one_study_index_each_instance_once(request, server_factory, database, isolation):
    # On SQLite (the embedded default) each store's commit is synced once the write
    # lock is free (archive/db.py): six writers at once still index each instance once.
    if database == "postgres":
        request.getfixturevalue("postgres_required")
    server = server_factory(database=database, PACS_TX_ISOLATION=isolation, workers=4, threads=2)
    answers = store_from_processes(server)

    counts = collections.Counter(answers)
    distinct = PROCESSES * (PER_PROCESS - SHARED) + SHARED
    # Every request answered 200; each distinct instance stored exactly once.
    assert counts == {(200, "Success"): distinct, (200, "AlreadyStored"): len(answers) - distinct}, counts

    assert server.sql("SELECT count(*) FROM patient") == [(1,)]
    assert server.sql("SELECT count(*) FROM study") == [(1,)]
    assert server.sql("SELECT count(*) FROM series") == [(1,)]
    assert server.sql("SELECT count(DISTINCT sop_instance_uid), count(*) FROM instance") == [(distinct, distinct)]
    changes = dict(server.sql("SELECT change_type, count(*) FROM change GROUP BY change_type"))
    assert changes == {"NewPatient": 1, "NewStudy": 1, "NewSeries": 1, "NewInstance": distinct}

    # Every indexed instance has its file, and there is no file without an instance.
    keys = {k for (k,) in server.sql(
        "SELECT a.storage_key FROM attachment a JOIN instance i ON i.public_id = a.resource_id")}
    assert len(keys) == distinct
    files = {p.name for p in server.storage_files()}
    assert files == keys
    assert server.temporary_files() == []
