"""Two listeners of one node (same database, same storage), eight associations at once
storing one study with overlapping instances: nothing lost, nothing doubled."""

import collections
import multiprocessing
import zlib

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from tests.dicomgen import make_instance, uid

LISTENERS = 2
PER_LISTENER = 4  # associations, each from its own OS process
PER_ASSOCIATION = 15
SHARED = 10  # SOP Instance UIDs every association sends; the 5 others are its own
DISTINCT = LISTENERS * PER_LISTENER * (PER_ASSOCIATION - SHARED) + SHARED

SILENCE = 300  # seconds an association may stay silent, on both sides

STUDY_UID = uid("two-listeners", "study")
SERIES_UID = uid("two-listeners", "series")


def instance_bytes(key):
    return make_instance(patient_id="TWO-1", patient_name="TWO^LISTENERS", study_uid=STUDY_UID, series_uid=SERIES_UID,
                         sop_uid=uid("two-listeners", key), instance_number=zlib.crc32(key.encode()) % 10000,
                         rows=16, columns=16)


def sender(args):
    """One OS process, one association: wait for the others, then C-STORE its 15 instances."""
    port, called, index, barrier = args
    keys = [f"own-{index}-{n}" for n in range(PER_ASSOCIATION - SHARED)] + [f"shared-{n}" for n in range(SHARED)]
    keys.sort(key=lambda k: zlib.crc32(f"{k}/{index}".encode()))  # each association in its own order
    datasets = [pydicom.dcmread(pydicom.filebase.DicomBytesIO(instance_bytes(k))) for k in keys]
    ae = AE(ae_title=f"SENDER{index}")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = SILENCE
    barrier.wait(300)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return ["not established"]
    try:
        statuses = []
        for n, dataset in enumerate(datasets, start=1):
            status = assoc.send_c_store(dataset, msg_id=n)
            statuses.append(status.Status if status else "no response")
        return statuses
    finally:
        assoc.release()


@pytest.fixture(scope="module")
def node(module_node):
    server = module_node.server()
    # Eight spawned senders on a loaded 2-core machine can each go silent for many
    # seconds between two PDUs; the listeners' idle limit must not end their
    # associations: what this test proves is exactly-once indexing, not timeouts.
    # A database connection for each of its associations and its heartbeat: with fewer,
    # a loaded machine's stores convoy on the one patient row and an association
    # waiting 30 s for a connection fails its C-STORE (a sizing question of its own).
    listeners = [module_node.listener(server, ae_title=f"LISTENER{n}", PACS_DICOM_TIMEOUT=SILENCE,
                                      PACS_DB_POOL_SIZE=PER_LISTENER + 2)
                 for n in range(1, LISTENERS + 1)]
    return server, listeners


def store_in_parallel(listeners):
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(LISTENERS * PER_LISTENER)
        jobs = [(listener.port, listener.ae_title, i * PER_LISTENER + j, barrier)
                for i, listener in enumerate(listeners) for j in range(PER_LISTENER)]
        with context.Pool(len(jobs)) as pool:
            # A bound on failure only: eight spawned interpreters on a loaded 2-core machine are slow.
            return pool.map_async(sender, jobs).get(timeout=600)


def test_eight_associations_on_two_listeners_store_one_study_once(node):
    server, listeners = node
    results = store_in_parallel(listeners)

    # Every C-STORE answered Success, a repeated instance included.
    statuses = collections.Counter(status for statuses in results for status in statuses)
    assert statuses == {0x0000: LISTENERS * PER_LISTENER * PER_ASSOCIATION}, statuses

    assert server.sql("SELECT count(*) FROM patient") == [(1,)]
    assert server.sql("SELECT count(*) FROM study") == [(1,)]
    assert server.sql("SELECT count(*) FROM series") == [(1,)]
    assert server.sql("SELECT count(DISTINCT sop_instance_uid), count(*) FROM instance") == [(DISTINCT, DISTINCT)]
    expected = {uid("two-listeners", f"own-{i}-{n}") for i in range(LISTENERS * PER_LISTENER)
                for n in range(PER_ASSOCIATION - SHARED)} | {uid("two-listeners", f"shared-{n}") for n in range(SHARED)}
    assert {sop for (sop,) in server.sql("SELECT sop_instance_uid FROM instance")} == expected
    changes = dict(server.sql("SELECT change_type, count(*) FROM change GROUP BY change_type"))
    assert changes == {"NewPatient": 1, "NewStudy": 1, "NewSeries": 1, "NewInstance": DISTINCT}

    # Both listeners served: each association's own instances name its sender and the listener it called.
    own = server.sql("SELECT remote_aet, called_aet, count(*) FROM instance WHERE sop_instance_uid <> ALL(%s) "
                     "GROUP BY remote_aet, called_aet", [[uid("two-listeners", f"shared-{n}") for n in range(SHARED)]])
    assert sorted(own) == sorted(
        (f"SENDER{i * PER_LISTENER + j}", listener.ae_title, PER_ASSOCIATION - SHARED)
        for i, listener in enumerate(listeners) for j in range(PER_LISTENER)
    )

    # Every indexed instance has its file, and there is no file without an instance.
    keys = {k for (k,) in server.sql(
        "SELECT a.storage_key FROM attachment a JOIN instance i ON i.public_id = a.resource_id")}
    assert len(keys) == DISTINCT
    assert server.sql("SELECT count(*) FROM attachment") == [(DISTINCT,)]
    assert {p.name for p in server.storage_files()} == keys
    assert server.temporary_files() == []
