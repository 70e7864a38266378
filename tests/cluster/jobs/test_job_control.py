"""Jobs belong to the cluster: one node creates a job, another lists, pauses,
resumes and cancels it; pause and cancel take effect between items."""

import json

import pydicom
import pytest
import redis
import rq

from tests import servers
from tests.peers import RemotePacs
from tests.cluster.jobs.conftest import study_files, upload, wait_job
from tests.waiting import wait_for


@pytest.fixture
def two_nodes(server_factory):
    first = server_factory("node-a")
    second = server_factory("node-b", join=first)
    return first, second


def action(server, job_id, verb):
    return servers.request_json(f"{server.url}/jobs/{job_id}/{verb}", method="POST")


def state(server, job_id):
    return servers.request_json(f"{server.url}/jobs/{job_id}")[1]["State"]


def queued_runs(server):
    """Ids of the runs (RQ jobs) waiting in the node's job queue."""
    connection = redis.Redis.from_url(server.env["REDIS_URL"])
    return rq.Queue(f"{server.env['PACS_QUEUE_PREFIX']}-jobs", connection=connection).job_ids


def run_done(server, run_id):
    """Whether a worker has finished with the run: RQ forgets it then (runs are
    queued with result_ttl=0)."""
    return not rq.job.Job.exists(run_id, connection=redis.Redis.from_url(server.env["REDIS_URL"]))


def test_a_job_of_one_node_is_listed_paused_resumed_and_cancelled_through_another(two_nodes, worker_factory):
    first, second = two_nodes
    (study,) = upload(first, study_files("ctl-a", 3))
    # No worker yet: the job waits in the queue.
    status, answer = servers.request_json(f"{first.url}/studies/{study}/archive", method="POST",
                                          body=b'{"Asynchronous": true}')
    job_id = answer["ID"]
    assert servers.request_json(f"{second.url}/jobs") == (200, [job_id])
    status, listed = servers.request_json(f"{second.url}/jobs?expand")
    assert [j["ID"] for j in listed] == [job_id] and listed[0]["State"] == "Pending"
    for key in ("Type", "Progress", "CreationTime", "EffectiveRuntime", "ErrorCode", "ErrorDescription",
                "Content", "Priority", "Node"):
        assert key in listed[0]

    assert action(second, job_id, "pause") == (200, {})
    assert state(first, job_id) == "Paused"
    (run,) = queued_runs(first)  # what the archive request queued
    worker_factory(first)
    # Once the worker is done with the queued run it has decided about the job.
    wait_for(lambda: run_done(first, run), what="the worker done with the queued run")
    assert state(first, job_id) == "Paused"  # a worker does not take a paused job
    assert action(first, job_id, "resume") == (200, {})
    assert wait_job(second, job_id)["State"] == "Success"
    status, answer = action(second, job_id, "pause")
    assert status == 400 and "Success" in answer["Details"]

    status, answer = servers.request_json(f"{second.url}/studies/{study}/archive", method="POST",
                                          body=b'{"Asynchronous": true}')
    other = answer["ID"]
    assert action(first, other, "cancel") == (200, {})
    assert wait_job(second, other, states=("Cancelled", "Success"))["State"] in ("Cancelled", "Success")
    status, answer = servers.request_json(f"{first.url}/jobs/nope")
    assert status == 404
    status, answer = servers.request_json(f"{first.url}/jobs/{job_id}/explode", method="POST")
    assert status == 404


def test_a_running_send_is_paused_between_items_and_resumed_where_it_stopped(two_nodes, worker_factory, tmp_path):
    first, second = two_nodes
    # Each C-STORE takes the slow peer 0.1 s: once the send goes on, the pause is
    # read (at most PROGRESS_INTERVAL later) long before the last of the 30.
    remote = RemotePacs(servers.free_port(), delay=0.1)
    try:
        files = study_files("ctl-b", 30)
        (study,) = upload(first, files)
        status, _ = servers.request_json(f"{first.url}/modalities/remote", method="PUT",
                                         body=json.dumps({"AET": "REMOTE", "Host": "127.0.0.1",
                                                          "Port": remote.port}).encode())
        assert status == 200
        # The run stops after its 5th instance while the hold file exists: the
        # pause is asked of a send that is certainly in the middle of its work.
        hold = tmp_path / "hold"
        hold.write_text("5")
        worker_factory(first, PACS_TEST_JOB_HOLD_FILE=hold)
        status, answer = servers.request_json(f"{first.url}/modalities/remote/store", method="POST",
                                              body=json.dumps({"Resources": [study], "Asynchronous": True}).encode())
        assert status == 200, answer
        job_id = answer["ID"]

        def held():
            job = servers.request_json(f"{first.url}/jobs/{job_id}")[1]
            assert job["State"] in ("Pending", "Running"), job
            return job["State"] == "Running" and job["Progress"] >= 5 * 100 // 30

        wait_for(held, what="the send held after its 5th instance")
        assert action(second, job_id, "pause") == (200, {})
        hold.unlink()
        job = wait_job(first, job_id, states=("Paused",))
        assert 0 < job["Progress"] < 100
        sent_when_paused = len(remote.received)
        # The run released its association before it wrote Paused; once the peer
        # has seen the association end, everything the run sent has been counted.
        wait_for(lambda: not remote.server.active_associations, what="the paused send's association ended")
        assert len(remote.received) == sent_when_paused < 30  # nothing more is sent while paused

        assert action(second, job_id, "resume") == (200, {})
        job = wait_job(first, job_id)
        assert job["State"] == "Success", job
        assert job["Progress"] == 100
        assert job["Content"]["InstancesCount"] == 30 and job["Content"]["FailedInstancesCount"] == 0
        received = [ds.SOPInstanceUID for ds in remote.received]
        assert len(received) == 30  # each instance once: the resumed run went on where it stopped
        assert sorted(received) == sorted(pydicom.dcmread(__import__("io").BytesIO(f)).SOPInstanceUID
                                          for f in files)
    finally:
        remote.stop()
