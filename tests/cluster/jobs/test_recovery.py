"""A worker killed in the middle of a job: the housekeeper notices, re-queues or
fails the job, and removes what the killed run left in the archive area."""

import time

import pytest

from tests import servers
from tests.waiting import wait_for, wait_seconds_passed
from tests.cluster.jobs.conftest import md5, study_files, upload, wait_job, zip_members

HEARTBEAT = 2  # PACS_JOB_HEARTBEAT_TIMEOUT of these nodes (seconds)


@pytest.fixture
def big_study(server_factory):
    server = server_factory(PACS_JOB_HEARTBEAT_TIMEOUT=HEARTBEAT)
    files = study_files("kill-a", 120, rows=128, columns=128)
    (study,) = upload(server, files)
    return server, study, files


def start_archive_and_kill_its_worker(server, study, worker_factory, tmp_path):
    # The worker holds the run after its 12th file (of 120) until the hold file is
    # gone, which it never is for this worker: it is killed certainly mid-run.
    hold = tmp_path / "hold"
    hold.write_text("12")
    worker = worker_factory(server, PACS_TEST_JOB_HOLD_FILE=hold)
    status, answer = servers.request_json(f"{server.url}/studies/{study}/archive", method="POST",
                                          body=b'{"Asynchronous": true}')
    assert status == 200, answer
    job_id = answer["ID"]

    def held():
        job = servers.request_json(f"{server.url}/jobs/{job_id}")[1]
        assert job["State"] in ("Pending", "Running"), job
        return job["State"] == "Running" and job["Progress"] >= 10

    wait_for(held, what="the archive job held after its 12th file")
    worker.process.kill()
    worker.process.wait(10)
    killed_at = time.monotonic()
    job = servers.request_json(f"{server.url}/jobs/{job_id}")[1]
    assert job["State"] == "Running" and job["Progress"] < 100, job  # what the killed run left
    partial = [p.name for p in server.archive_files()]
    assert partial == [f"{job_id}.zip.part"]
    # The housekeeper gives the run up once its heartbeat is older than the timeout.
    wait_seconds_passed(killed_at, HEARTBEAT + 0.5)
    return job_id


def test_a_killed_archive_job_is_queued_again_and_completes(big_study, worker_factory, tmp_path):
    server, study, files = big_study
    job_id = start_archive_and_kill_its_worker(server, study, worker_factory, tmp_path)
    servers.housekeeper_pass(server)
    job = servers.request_json(f"{server.url}/jobs/{job_id}")[1]
    assert job["State"] == "Pending", job
    assert server.archive_files() == []  # the partial file is gone

    worker_factory(server)  # another worker takes the job
    job = wait_job(server, job_id)
    assert job["State"] == "Success", job
    status, _, body = servers.request(f"{server.url}/jobs/{job_id}/archive")
    assert status == 200
    assert sorted(md5(d) for d in zip_members(body).values()) == sorted(md5(f) for f in files)
    assert [p.name for p in server.archive_files()] == [f"{job_id}.zip"]


def test_a_job_whose_workers_keep_dying_fails_with_the_reason(big_study, worker_factory, tmp_path):
    server, study, _ = big_study
    job_id = start_archive_and_kill_its_worker(server, study, worker_factory, tmp_path)
    servers.housekeeper_pass(server, PACS_JOB_ATTEMPTS=1)
    job = servers.request_json(f"{server.url}/jobs/{job_id}")[1]
    assert job["State"] == "Failure", job
    assert "stopped" in job["ErrorDetails"] and job["ErrorCode"] != 0
    assert server.archive_files() == []
    status, _, _ = servers.request(f"{server.url}/jobs/{job_id}/archive")
    assert status == 404
    # An administrator resubmits it once the workers are healthy.
    status, _ = servers.request_json(f"{server.url}/jobs/{job_id}/resubmit", method="POST")
    assert status == 200
    worker_factory(server)
    assert wait_job(server, job_id)["State"] == "Success"
