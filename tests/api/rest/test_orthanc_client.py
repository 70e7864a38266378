"""Orthanc's own Python client (pyorthanc) against a real pacsweb process."""

import hashlib
import http.client
import json

import pyorthanc
import pytest

from tests import servers
from tests.dicomgen import make_instance, uid


@pytest.fixture
def orthanc(server_factory):
    server = server_factory()
    client = pyorthanc.Orthanc(server.url, username="admin", password=servers.ADMIN_PASSWORD)
    yield client
    client.close()


def test_pyorthanc_upload_browse_find_download_annotate_delete(orthanc):
    files = [make_instance(patient_id="PYO", patient_name="CLIENT^TEST", study_uid=uid("pyo"), instance_number=n + 1)
             for n in range(3)]
    for data in files:
        assert orthanc.post_instances(data)["Status"] == "Success"

    assert len(orthanc.get_patients()) == 1
    study_id = orthanc.get_studies()[0]
    study = pyorthanc.Study(study_id, orthanc)
    assert study.patient_information["PatientName"] == "CLIENT^TEST"
    assert len(study.series) == 1 and len(study.series[0].instances) == 3

    found = pyorthanc.find_studies(orthanc, query={"PatientName": "client*"})
    assert [s.id_ for s in found] == [study_id]

    instance_id = orthanc.get_instances()[0]
    data = orthanc.get_instances_id_file(instance_id)
    assert hashlib.sha256(data).hexdigest() in {hashlib.sha256(f).hexdigest() for f in files}
    assert orthanc.get_instances_id_simplified_tags(instance_id)["PatientID"] == "PYO"

    orthanc.put_studies_id_metadata_name(study_id, "Reviewed", "yes")
    assert orthanc.get_studies_id_metadata_name(study_id, "Reviewed") == "yes"
    orthanc.put_studies_id_attachments_name(study_id, "notes", b"some notes")
    assert orthanc.get_studies_id_attachments(study_id) == ["notes"]

    changes = orthanc.get_changes()
    assert {"NewStudy", "UpdatedMetadata", "UpdatedAttachment"} <= {c["ChangeType"] for c in changes["Changes"]}

    orthanc.delete_studies_id(study_id)
    assert orthanc.get_studies() == []
    assert orthanc.get_statistics()["CountInstances"] == 0


def test_old_orthanc_clients_paths_and_headers_succeed(server_factory):
    """What scripts written for Orthanc send, through gunicorn as a node runs it."""
    server = server_factory()
    data = make_instance(patient_id="OLD")

    # An empty Expect: is how libcurl clients turn 100-continue off.
    status, _, body = raw_request(server, "POST", "/instances", data, {"Expect": ""})
    assert status == 200, body
    patient_id = json.loads(body)["ParentPatient"]
    # A base URL ending in "/" joined with "/patients"; a trailing slash.
    for path in ("//patients", "/patients/", f"//patients/{patient_id}/"):
        status, _, body = raw_request(server, "GET", path)
        assert status == 200 and patient_id in body.decode(), path


def raw_request(server, method, path, body=None, headers=()):
    """The request exactly as written (urllib would clean the path and the headers)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.putheader("Authorization", servers.auth_header())
        for name, value in dict(headers).items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body or b"")))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()
