"""Three nodes sharing PostgreSQL, storage and Redis answer as one archive."""

import io
import json
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pydicom

from tests import servers
from tests.cluster.conftest import c_store
from tests.dicomgen import make_instance, uid
from tests.cluster.jobs.conftest import study_files, wait_job
from tests.waiting import wait_for, wait_seconds_passed


def rest_store(server, data):
    status, answer = servers.request_json(server.url + "/instances", method="POST", body=data)
    return status == 200


def same_everywhere(nodes, path):
    answers = [servers.request_json(node.url + path) for node in nodes]
    assert all(status == 200 for status, _ in answers), answers
    first = answers[0][1]
    for status, answer in answers[1:]:
        assert answer == first, (path, first, answer)
    return first


def test_concurrent_writes_through_three_nodes_give_one_archive(node_factory, listener_factory, worker_factory):
    nodes = node_factory(3, PACS_STABLE_AGE=2)
    listeners = [listener_factory(node) for node in nodes]
    files = [f for tag in ("one-a", "one-b") for f in study_files(tag, 30, series=3)]
    datasets = [pydicom.dcmread(io.BytesIO(f)) for f in files]
    rng = random.Random(6)
    # Every instance goes to two different nodes, once over REST and once over DICOM,
    # from 6 clients at once: the archive keeps each once.
    plans = []
    for data, ds in zip(files, datasets):
        rest_node, dicom_node = rng.sample(range(3), 2)
        plans.append((rest_node, dicom_node, data, ds))
    with ThreadPoolExecutor(6) as pool:
        rest = [pool.submit(rest_store, nodes[r], data) for r, _, data, _ in plans]
        dicom = [pool.submit(c_store, listeners[i].port, [ds for _, d, _, ds in plans if d == i]) for i in range(3)]
        assert all(f.result() for f in rest)
        assert sorted(uid for f in dicom for uid in f.result()) == sorted(ds.SOPInstanceUID for ds in datasets)

    statistics = [servers.request_json(node.url + "/statistics")[1] for node in nodes]
    assert {(s["CountPatients"], s["CountStudies"], s["CountSeries"], s["CountInstances"]) for s in statistics} == \
        {(2, 2, 6, 60)}
    assert len(nodes[0].storage_files()) == 60
    studies = same_everywhere(nodes, "/studies")
    assert len(studies) == 2

    # Cluster-wide configuration and jobs: written through one node, read through all.
    servers.request_json(nodes[0].url + "/modalities/ct1", method="PUT",
                         body=json.dumps({"AET": "CT1", "Host": "127.0.0.1", "Port": 104}).encode())
    servers.request_json(nodes[2].url + "/peers/site-b", method="PUT",
                         body=json.dumps({"Url": "http://127.0.0.1:1/"}).encode())
    status, job = servers.request_json(nodes[1].url + f"/studies/{studies[0]}/archive", method="POST",
                                       body=b'{"Asynchronous": true}')
    assert same_everywhere(nodes, "/modalities") == ["ct1"]
    assert same_everywhere(nodes, "/peers") == ["site-b"]
    assert same_everywhere(nodes, "/jobs") == [job["ID"]]
    worker_factory(nodes[2])
    assert wait_job(nodes[0], job["ID"])["State"] == "Success"
    changes = same_everywhere(nodes, "/changes?limit=1000")
    assert sum(c["ChangeType"] == "NewInstance" for c in changes["Changes"]) == 60

    # Stable after PACS_STABLE_AGE seconds, whichever node received what, seen by every node.
    worker_factory(nodes[1], command="housekeeper", PACS_HOUSEKEEPER_INTERVAL=0.5)
    wait_for(lambda: all(s["IsStable"] for s in servers.request_json(nodes[2].url + "/studies?expand")[1]),
             what="stable studies")
    expanded = same_everywhere(nodes, "/studies?expand")
    assert [s["IsStable"] for s in expanded] == [True, True]


def test_studies_received_in_pieces_through_several_nodes_stabilise_once(node_factory, worker_factory):
    # Long enough that a study read right after its new piece, even on a loaded
    # machine, is not stable yet.
    nodes = node_factory(3, PACS_STABLE_AGE=6)
    pieces = {tag: study_files(tag, 9, series=3) for tag in ("piece-a", "piece-b", "piece-c")}
    for round_ in range(3):
        for n, (tag, files) in enumerate(pieces.items()):
            for data in files[round_ * 3:(round_ + 1) * 3]:
                assert rest_store(nodes[(n + round_) % 3], data)
    last_piece = time.monotonic()
    # Every node runs its housekeeper, as in production, from when every piece is
    # in: a pass during the pieces could stabilise a study early if the machine
    # were slow enough to space its pieces by more than PACS_STABLE_AGE.
    for node in nodes:
        worker_factory(node, command="housekeeper", PACS_HOUSEKEEPER_INTERVAL=0.3)
    # Stability is a duration the housekeepers count: every study is due by now.
    wait_seconds_passed(last_piece, 6.5)
    # Besides the housekeepers, three forced passes at the same moment, one per node.
    passes = [subprocess.Popen([sys.executable, "manage.py", "housekeeper", "--once"], env=node.env,
                               cwd=servers.REPO, stdout=subprocess.DEVNULL) for node in nodes]
    assert [p.wait(60) for p in passes] == [0, 0, 0]
    wait_for(lambda: len(stable_changes(nodes[0], "StableStudy")) == 3, what="3 StableStudy changes")
    servers.housekeeper_pass(nodes[1])  # one more pass, certainly after: still exactly one change per study
    assert sorted(stable_changes(nodes[1], "StableStudy")) == sorted(same_everywhere(nodes, "/studies"))
    assert len(stable_changes(nodes[2], "StableSeries")) == 9
    assert len(stable_changes(nodes[0], "StablePatient")) == 3

    # A new piece makes the study unstable again, then stable again: one more change.
    study = stable_changes(nodes[0], "StableStudy")[0]
    described = servers.request_json(nodes[0].url + f"/studies/{study}")[1]
    series = servers.request_json(nodes[0].url + f"/studies/{study}/series")[1][0]
    extra = make_instance(patient_id=described["PatientMainDicomTags"]["PatientID"],
                          study_uid=described["MainDicomTags"]["StudyInstanceUID"],
                          series_uid=series["MainDicomTags"]["SeriesInstanceUID"], sop_uid=uid("piece-extra"))
    assert rest_store(nodes[2], extra)
    assert servers.request_json(nodes[1].url + f"/studies/{study}")[1]["IsStable"] is False
    wait_for(lambda: stable_changes(nodes[0], "StableStudy").count(study) == 2, what="restabilised")
    servers.housekeeper_pass(nodes[0])  # one more pass, certainly after
    assert stable_changes(nodes[0], "StableStudy").count(study) == 2


def stable_changes(node, kind):
    changes = servers.request_json(node.url + "/changes?limit=10000")[1]["Changes"]
    return [c["ID"] for c in changes if c["ChangeType"] == kind]
