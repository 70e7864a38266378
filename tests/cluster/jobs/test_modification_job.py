"""A 2,000-instance study anonymized as a job on one node while the other serves reads;
its progress is seen from both nodes; its worker is killed mid-run and another node's
worker finishes it without a duplicate."""

import time

from tests import servers
from tests.cluster.jobs.conftest import study_files, upload, wait_job
from tests.waiting import wait_for, wait_seconds_passed

HEARTBEAT = 2
COUNT = 2000


def test_killed_anonymization_resumes_on_another_node_without_duplicates(server_factory, worker_factory, tmp_path):
    node_a = server_factory("a", PACS_JOB_HEARTBEAT_TIMEOUT=HEARTBEAT, PACS_NODE_NAME="a", workers=2)
    node_b = server_factory("b", join=node_a, PACS_JOB_HEARTBEAT_TIMEOUT=HEARTBEAT, PACS_NODE_NAME="b")
    (study,) = upload(node_a, study_files("anon-2000", COUNT, series=4, rows=8, columns=8))

    hold = tmp_path / "hold"
    hold.write_text("300")
    worker = worker_factory(node_a, PACS_TEST_JOB_HOLD_FILE=hold)
    status, answer = servers.request_json(f"{node_a.url}/studies/{study}/anonymize", method="POST",
                                          body=b'{"Asynchronous": true}')
    assert status == 200 and set(answer) == {"ID", "Path"}, answer
    job_id = answer["ID"]

    def held_as_seen_from(node):
        job = servers.request_json(f"{node.url}/jobs/{job_id}")[1]
        assert job["State"] in ("Pending", "Running"), job
        return job if job["State"] == "Running" and job["Progress"] >= 15 else None

    seen_from_a = wait_for(lambda: held_as_seen_from(node_a), timeout=120, what="the job held at its 300th instance")
    seen_from_b = held_as_seen_from(node_b)
    assert seen_from_b["Progress"] == seen_from_a["Progress"] and seen_from_b["Type"] == "ResourceModification"
    # Node b serves reads of the source while node a's worker writes.
    status, source = servers.request_json(f"{node_b.url}/studies/{study}")
    assert status == 200 and len(source["Series"]) == 4

    worker.process.kill()
    worker.process.wait(10)
    wait_seconds_passed(time.monotonic(), HEARTBEAT + 0.5)
    servers.housekeeper_pass(node_b)
    assert servers.request_json(f"{node_b.url}/jobs/{job_id}")[1]["State"] == "Pending"

    worker_factory(node_b)
    job = wait_job(node_b, job_id, timeout=300)
    assert job["State"] == "Success", job
    result = job["Content"]
    assert result["InstancesCount"] == COUNT and result["IsAnonymization"] is True
    assert result["FailedInstancesCount"] == 0
    status, statistics = servers.request_json(f"{node_a.url}/studies/{result['ID']}/statistics")
    assert statistics["CountInstances"] == COUNT and statistics["CountSeries"] == 4
    # Both studies whole, and nothing else: the replayed items were not stored twice.
    status, everything = servers.request_json(f"{node_a.url}/statistics")
    assert everything["CountInstances"] == 2 * COUNT and everything["CountStudies"] == 2
