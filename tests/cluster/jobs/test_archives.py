"""ZIP archives and DICOMDIR media: synchronous (streamed) and asynchronous (jobs)."""

import io
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
from pydicom.fileset import FileSet

from tests import servers
from tests.cluster.jobs.conftest import md5, study_files, upload, wait_job, zip_members
from tests.waiting import wait_seconds_passed


@pytest.fixture
def node(server_factory, worker_factory):
    server = server_factory(PACS_ARCHIVE_CACHE_SIZE=3)
    worker_factory(server)
    return server


def test_archive_has_orthancs_layout_and_the_stored_bytes(node):
    first = study_files("arch-a", 6, series=2, patient_name="DOE^JANE", accession_number="ACC0001",
                        study_description="CT CHEST", series_description="AXIAL 1mm")
    (study,) = upload(node, first)
    status, headers, body = servers.request(f"{node.url}/studies/{study}/archive")
    assert status == 200
    assert headers["Content-Type"] == "application/zip"
    assert f'filename="{study}.zip"' in headers["Content-Disposition"]
    members = zip_members(body)
    # Orthanc's names: "PatientID PatientName/Accession Description/Modality Description/CT000000.dcm",
    # reduced to letters, digits, space, dot and underscore.
    folders = sorted({name.rsplit("/", 1)[0] for name in members})
    assert folders == ["Parch-a DOE JANE/ACC0001 CT CHEST/CT AXIAL 1mm",
                       "Parch-a DOE JANE/ACC0001 CT CHEST/CT AXIAL 1mm-2"] or \
        folders == ["Parcha DOE JANE/ACC0001 CT CHEST/CT AXIAL 1mm",
                    "Parcha DOE JANE/ACC0001 CT CHEST/CT AXIAL 1mm-2"]
    assert sorted(name.rsplit("/", 1)[1] for name in members) == \
        ["CT000000.dcm", "CT000000.dcm", "CT000001.dcm", "CT000001.dcm", "CT000002.dcm", "CT000002.dcm"]
    assert sorted(md5(data) for data in members.values()) == sorted(md5(data) for data in first)


def test_patient_archive_and_create_archive_hold_every_study_once(node):
    a = study_files("arch-b", 3, patient_name="ROE^RICHARD")
    b = [pydicom.dcmread(io.BytesIO(f)) for f in study_files("arch-b2", 2)]
    for ds in b:  # the same patient, another study
        ds.PatientID, ds.PatientName = "P-arch-b", "ROE^RICHARD"
    b = [_bytes(ds) for ds in b]
    studies = upload(node, a + b)
    assert len(studies) == 2
    status, patient = servers.request_json(f"{node.url}/studies/{studies[0]}/patient")
    status, _, body = servers.request(f"{node.url}/patients/{patient['ID']}/archive")
    assert status == 200
    assert sorted(md5(d) for d in zip_members(body).values()) == sorted(md5(d) for d in a + b)
    # Overlapping resources (a study and its patient) give each file once.
    status, _, body = servers.request(f"{node.url}/tools/create-archive", method="POST",
                                      body=f'{{"Resources": ["{studies[0]}", "{patient["ID"]}"]}}'.encode())
    assert status == 200
    assert sorted(md5(d) for d in zip_members(body).values()) == sorted(md5(d) for d in a + b)


def _bytes(ds):
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_media_has_a_dicomdir_that_pydicom_reads(node, tmp_path):
    files = study_files("media-a", 5, series=2)
    (study,) = upload(node, files)
    status, _, body = servers.request(f"{node.url}/studies/{study}/media")
    assert status == 200
    members = zip_members(body)
    assert sorted(members) == ["DICOMDIR", "IMAGES/IM0", "IMAGES/IM1", "IMAGES/IM2", "IMAGES/IM3", "IMAGES/IM4"]
    for name, data in members.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    fileset = FileSet(pydicom.dcmread(tmp_path / "DICOMDIR"))
    by_uid = {pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID: md5(f) for f in files}
    assert len(fileset) == 5
    for instance in fileset:
        assert md5(Path(instance.path).read_bytes()) == by_uid[instance.SOPInstanceUID]
    assert {i.PatientID for i in fileset} == {"P-media-a"}
    assert len({i.SeriesInstanceUID for i in fileset}) == 2


def test_a_synchronous_archive_is_streamed_while_it_is_built(node):
    files = study_files("stream-a", 8, rows=256, columns=256)
    (study,) = upload(node, files)
    # Remove the last file from the storage area behind the archive's back: a
    # streamed answer has already sent its status and its first files when it
    # finds out; a buffered one would answer an error.
    newest = max(node.storage_files(), key=lambda p: p.stat().st_mtime_ns)
    newest.unlink()
    req = urllib.request.Request(f"{node.url}/studies/{study}/archive",
                                 headers={"Authorization": servers.auth_header()})
    received = b""
    with urllib.request.urlopen(req, timeout=30) as response:
        assert response.status == 200
        with pytest.raises(Exception):
            while chunk := response.read1(65536):
                received += chunk
            raise AssertionError("the archive ended without error although a file is missing")
    assert received.startswith(b"PK\x03\x04")
    # The seven files read before the missing one arrived before the failure.
    assert received.count(b"PK\x03\x04") == 7


def test_a_hundred_synchronous_and_a_hundred_asynchronous_archives_leave_no_file_behind(node):
    files = study_files("many-a", 4)
    (study,) = upload(node, files)
    expected = sorted(md5(f) for f in files)
    for _ in range(100):
        status, _, body = servers.request(f"{node.url}/studies/{study}/archive")
        assert status == 200
        assert sorted(md5(d) for d in zip_members(body).values()) == expected
    for n in range(100):
        status, answer = servers.request_json(f"{node.url}/studies/{study}/archive", method="POST",
                                              body=b'{"Asynchronous": true}')
        assert status == 200, answer
        assert answer["Path"] == f"/jobs/{answer['ID']}"
        job = wait_job(node, answer["ID"])
        assert job["State"] == "Success", job
        assert job["Type"] == "Archive" and job["Progress"] == 100
        assert job["Content"]["InstancesCount"] == 4
        status, headers, body = servers.request(f"{node.url}/jobs/{answer['ID']}/archive")
        assert status == 200
        assert int(job["Content"]["ArchiveSize"]) == len(body)
        assert sorted(md5(d) for d in zip_members(body).values()) == expected
    assert node.temporary_files() == []
    kept = node.archive_files()
    assert len(kept) <= 3, kept
    assert not [p for p in kept if p.name.endswith(".part")]
    # The oldest archives were removed; their jobs say so.
    status, jobs = servers.request_json(f"{node.url}/jobs")
    status, _, body = servers.request(f"{node.url}/jobs/{jobs[0]}/archive")
    assert status == 404
    assert b"expired" in body


def test_bad_archive_requests_are_refused_with_reasons(node):
    (study,) = upload(node, study_files("bad-a", 1))
    status, answer = servers.request_json(f"{node.url}/studies/nope/archive")
    assert status == 404
    status, answer = servers.request_json(f"{node.url}/tools/create-archive", method="POST", body=b"garbage")
    assert status == 400 and "JSON" in answer["Details"]
    status, answer = servers.request_json(f"{node.url}/tools/create-archive", method="POST",
                                          body=f'["{study}", "nope"]'.encode())
    assert status == 404 and "nope" in answer["Details"]
    status, answer = servers.request_json(f"{node.url}/studies/{study}/archive", method="POST",
                                          body=b'{"Asynchronous": "yes"}')
    assert status == 400
    status, answer = servers.request_json(f"{node.url}/jobs/nope/archive")
    assert status == 404
    status, jobs = servers.request_json(f"{node.url}/jobs")
    assert jobs == []  # nothing was started by the refused requests


# Long enough that the housekeeper pass right after a download (a process start:
# seconds on a loaded machine) comes well within it.
ARCHIVE_TTL = 30


def test_asynchronous_media_expire_after_their_ttl(server_factory, worker_factory, tmp_path):
    server = server_factory(PACS_ARCHIVE_TTL=ARCHIVE_TTL)
    worker_factory(server)
    files = study_files("ttl-a", 3)
    (study,) = upload(server, files)
    status, answer = servers.request_json(f"{server.url}/studies/{study}/media", method="POST",
                                          body=b'{"Asynchronous": true}')
    job = wait_job(server, answer["ID"])
    assert (job["State"], job["Type"]) == ("Success", "Media")
    status, _, body = servers.request(f"{server.url}/jobs/{answer['ID']}/archive")
    used = time.monotonic()  # the TTL runs from the last download
    assert status == 200 and "DICOMDIR" in zip_members(body)
    servers.housekeeper_pass(server)
    assert len(server.archive_files()) == 1  # still fresh
    # The TTL is a duration the housekeeper counts: only time makes the archive stale.
    wait_seconds_passed(used, ARCHIVE_TTL + 0.5)
    servers.housekeeper_pass(server)
    assert server.archive_files() == []
    status, _, body = servers.request(f"{server.url}/jobs/{answer['ID']}/archive")
    assert status == 404 and b"expired" in body


def test_the_job_history_is_pruned_with_the_archives_it_owns(server_factory, worker_factory):
    server = server_factory(PACS_JOBS_HISTORY_SIZE=3, PACS_ARCHIVE_CACHE_SIZE=10)
    worker_factory(server)
    (study,) = upload(server, study_files("hist-a", 2))
    ids = []
    for _ in range(5):
        status, answer = servers.request_json(f"{server.url}/series/{_series(server, study)}/archive",
                                              method="POST", body=b'{"Asynchronous": true}')
        assert wait_job(server, answer["ID"])["State"] == "Success"
        ids.append(answer["ID"])
    status, listed = servers.request_json(f"{server.url}/jobs")
    assert listed == ids[-3:]
    assert sorted(p.name for p in server.archive_files()) == sorted(f"{i}.zip" for i in ids[-3:])
    assert servers.request_json(f"{server.url}/jobs/{ids[0]}")[0] == 404


def _series(server, study):
    return servers.request_json(f"{server.url}/studies/{study}")[1]["Series"][0]


def test_an_archive_job_racing_a_delete_ends_with_a_clear_message(server_factory, worker_factory, tmp_path):
    server = server_factory()
    (study,) = upload(server, study_files("arch-race", 6))
    hold = tmp_path / "hold"
    hold.write_text("2")  # the run stops after its 2nd file while this exists
    worker_factory(server, PACS_TEST_JOB_HOLD_FILE=hold)
    status, answer = servers.request_json(f"{server.url}/studies/{study}/archive", method="POST",
                                          body=b'{"Asynchronous": true}')
    assert status == 200, answer
    job_id = answer["ID"]
    wait_job(server, job_id, states=("Running",))
    from tests.waiting import wait_for
    wait_for(lambda: servers.request_json(f"{server.url}/jobs/{job_id}")[1]["Progress"] > 0,
             what="the archive held after its 2nd file")
    assert servers.request(f"{server.url}/studies/{study}", method="DELETE")[0] == 200
    worker_factory(server)  # takes the file deletions while the first worker is held
    wait_for(lambda: server.storage_files() == [], what="the deleted study's files removed")
    hold.unlink()
    job = wait_job(server, job_id)
    assert job["State"] == "Failure", job
    assert job["ErrorDescription"] == "Unknown resource"
    assert "deleted while the archive was being built" in job["ErrorDetails"], job
    assert not server.archive_files()


def test_a_redis_restart_during_an_archive_job_does_not_fail_it(server_factory, worker_factory, tmp_path):
    from cluster.embedded import EmbeddedRedis
    from tests.waiting import wait_for

    redis = EmbeddedRedis(tmp_path / "redis")
    try:
        server = server_factory(REDIS_URL=redis.url, PACS_JOB_HEARTBEAT_TIMEOUT=4)
        (study,) = upload(server, study_files("arch-redis", 6))
        hold = tmp_path / "hold"
        hold.write_text("2")
        worker = worker_factory(server, PACS_TEST_JOB_HOLD_FILE=hold)
        status, answer = servers.request_json(f"{server.url}/studies/{study}/archive", method="POST",
                                              body=b'{"Asynchronous": true}')
        assert status == 200, answer
        job_id = answer["ID"]
        wait_for(lambda: servers.request_json(f"{server.url}/jobs/{job_id}")[1]["Progress"] > 0,
                 what="the archive held after its 2nd file")
        redis.process.kill()  # a crash, while the job runs
        redis.process.wait(10)
        hold.unlink()
        redis = EmbeddedRedis(tmp_path / "redis")  # back, empty, on the same socket
        servers.housekeeper_pass(server)
        job = wait_job(server, job_id, timeout=90)
        assert job["State"] == "Success", (job, worker.output()[-3000:])
        status, _, body = servers.request(f"{server.url}/jobs/{job_id}/archive")
        assert status == 200 and len(zip_members(body)) == 6
        assert worker.process.poll() is None  # the worker waited for Redis instead of dying
    finally:
        redis.stop()
