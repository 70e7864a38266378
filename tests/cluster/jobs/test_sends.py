"""Sends as jobs: C-STORE to a DICOM peer, HTTP to an Orthanc-compatible peer."""

import io
import json

import pydicom
import pytest

from tests import servers
from tests.peers import RemotePacs
from tests.cluster.jobs.conftest import md5, study_files, upload, wait_job


def dataset_bytes(part10):
    """The data set of a Part 10 file without its preamble and File Meta group."""
    group_length = int.from_bytes(part10[140:144], "little")  # (0002,0000) UL, explicit VR LE
    return part10[144 + group_length:]


@pytest.fixture
def remote():
    pacs = RemotePacs(servers.free_port())
    yield pacs
    pacs.stop()


def test_a_study_sent_to_a_dicom_peer_arrives_whole(server_factory, worker_factory, remote):
    server = server_factory()
    worker_factory(server)
    files = study_files("send-a", 12, series=3)
    (study,) = upload(server, files)
    status, _ = servers.request_json(f"{server.url}/modalities/remote", method="PUT",
                                     body=json.dumps({"AET": "REMOTE", "Host": "127.0.0.1",
                                                      "Port": remote.port}).encode())
    assert status == 200
    status, answer = servers.request_json(f"{server.url}/modalities/remote/store", method="POST",
                                          body=json.dumps({"Resources": [study], "Asynchronous": True}).encode())
    assert status == 200, answer
    job = wait_job(server, answer["ID"])
    assert job["State"] == "Success", job
    assert job["Type"] == "DicomModalityStore" and job["Progress"] == 100
    assert job["Content"]["InstancesCount"] == 12 and job["Content"]["FailedInstancesCount"] == 0
    assert job["Content"]["RemoteAet"] == "REMOTE" and job["Content"]["ParentResources"] == [study]
    by_uid = {pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID: f for f in files}
    assert sorted(ds.SOPInstanceUID for ds in remote.received) == sorted(by_uid)
    for ds in remote.received:
        encoded = io.BytesIO()
        pydicom.dcmwrite(encoded, ds, implicit_vr=False, little_endian=True)
        assert md5(encoded.getvalue()) == md5(dataset_bytes(by_uid[ds.SOPInstanceUID]))


def test_a_study_sent_to_a_pacsweb_peer_arrives_byte_for_byte(server_factory, worker_factory):
    server = server_factory("sender")
    peer = server_factory("receiver")
    worker_factory(server)
    files = study_files("send-b", 10, series=2)
    (study,) = upload(server, files)
    status, _ = servers.request_json(f"{server.url}/peers/other", method="PUT", body=json.dumps(
        {"Url": peer.url, "Username": "admin", "Password": servers.ADMIN_PASSWORD}).encode())
    assert status == 200
    assert servers.request_json(f"{server.url}/peers") == (200, ["other"])
    status, expanded = servers.request_json(f"{server.url}/peers?expand")
    assert expanded["other"]["Url"] == peer.url + "/" and expanded["other"]["Username"] == "admin"
    assert expanded["other"]["Password"] is None  # a secret is never shown
    assert servers.ADMIN_PASSWORD.encode() not in servers.request(f"{server.url}/peers/other/configuration")[2]
    status, system = servers.request_json(f"{server.url}/peers/other/system")
    assert status == 200 and "Version" in system

    status, answer = servers.request_json(f"{server.url}/peers/other/store", method="POST",
                                          body=json.dumps({"Resources": [study], "Asynchronous": True}).encode())
    assert status == 200, answer
    job = wait_job(server, answer["ID"])
    assert job["State"] == "Success", job
    assert job["Type"] == "OrthancPeerStore" and job["Progress"] == 100
    assert job["Content"]["InstancesCount"] == 10 and job["Content"]["FailedInstancesCount"] == 0
    status, instances = servers.request_json(f"{peer.url}/instances")
    received = sorted(md5(servers.request(f"{peer.url}/instances/{i}/file")[2]) for i in instances)
    assert received == sorted(md5(f) for f in files)

    # Synchronous (Orthanc's default): the answer is the job's content once done.
    status, answer = servers.request_json(f"{server.url}/peers/other/store", method="POST",
                                          body=json.dumps([study]).encode())
    assert status == 200 and answer["InstancesCount"] == 10, answer
    status, jobs = servers.request_json(f"{server.url}/jobs?expand")
    assert [j["State"] for j in jobs] == ["Success", "Success"]


def test_a_peer_that_refuses_our_credentials_fails_the_job_with_the_reason(server_factory, worker_factory):
    server = server_factory("sender")
    peer = server_factory("receiver")
    worker_factory(server)
    (study,) = upload(server, study_files("send-c", 2))
    servers.request_json(f"{server.url}/peers/other", method="PUT", body=json.dumps(
        {"Url": peer.url, "Username": "admin", "Password": "wrong"}).encode())
    status, answer = servers.request_json(f"{server.url}/peers/other/store", method="POST",
                                          body=json.dumps({"Resources": [study], "Asynchronous": True}).encode())
    job = wait_job(server, answer["ID"])
    assert job["State"] == "Failure"
    assert "credentials" in job["ErrorDetails"] and job["ErrorCode"] == 9
    assert servers.request_json(f"{peer.url}/instances") == (200, [])


def test_bad_peer_definitions_are_refused_and_change_nothing(server_factory):
    server = server_factory()
    for body in (b"{}", b'{"Url": "ftp://x"}', b'{"Url": "http://x", "Timeout": -1}', b"not json",
                 b'{"Url": "http://x", "HttpHeaders": {"A": 1}}'):
        status, answer = servers.request_json(f"{server.url}/peers/p", method="PUT", body=body)
        assert status == 400, (body, answer)
    assert servers.request_json(f"{server.url}/peers") == (200, [])
    status, _ = servers.request_json(f"{server.url}/peers/p/store", method="POST", body=b'["x"]')
    assert status == 404
