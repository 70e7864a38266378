"""The Python clients users drive Orthanc with (pyorthanc, orthanc-api-client), and
the requests of older scripts, against a real pacsweb process."""

import gzip
import hashlib
import http.client
import io
import json
import zipfile

import pydicom
import pyorthanc
import pytest
from orthanc_api_client import OrthancApiClient

from tests import servers
from tests.dicomgen import make_instance, uid
from tests.peers import RemotePacs
from tests.storing import zip_of
from tests.waiting import wait_for


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



def test_pyorthanc_modalities_query_retrieve_jobs_and_archives(server_factory, worker_factory, listener_factory):
    server = server_factory()
    worker_factory(server)
    listener = listener_factory(server, ae_title="PACSWEB")
    remote = RemotePacs(servers.free_port(), destinations={"PACSWEB": ("127.0.0.1", listener.port)})
    client = pyorthanc.Orthanc(server.url, username="admin", password=servers.ADMIN_PASSWORD)
    try:
        files = [make_instance(patient_id="PYM", study_uid=uid("pym"), instance_number=n) for n in (1, 2)]
        stored = [client.post_instances(data) for data in files]
        study = pyorthanc.Study(stored[0]["ParentStudy"], client)
        with zipfile.ZipFile(io.BytesIO(study.get_zip())) as archive:
            assert len([n for n in archive.namelist() if not n.endswith("/")]) == 2

        client.put_modalities_id("remote", json={"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port})
        modality = pyorthanc.Modality(client, "remote")
        assert modality.echo()
        modality.store(stored[0]["ParentSeries"])
        assert sorted(str(ds.SOPInstanceUID) for ds in remote.received) == \
            sorted(str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID) for data in files)

        job_id = client.post_modalities_id_store("remote", json={"Resources": [stored[0]["ID"]], "Asynchronous": True})["ID"]
        job = pyorthanc.Job(job_id, client)
        wait_for(lambda: job.state in (pyorthanc.jobs.State.success, pyorthanc.jobs.State.failure), what="the send job")
        assert job.state == pyorthanc.jobs.State.success and len(remote.received) == 3

        remote_uid = uid("pym-remote")
        remote.held.extend(pydicom.dcmread(io.BytesIO(make_instance(patient_id="RMT-PYM", study_uid=remote_uid,
                                                                     instance_number=n))) for n in (1, 2, 3))
        found = modality.query({"Level": "Study", "Query": {"PatientID": "RMT*"}})
        assert [a["StudyInstanceUID"] for a in found["answers"]] == [remote_uid]
        assert found["ID"] in client.get_queries()
        modality.move(found["ID"], {"TargetAet": "PACSWEB"})
        [retrieved] = pyorthanc.find_studies(client, query={"StudyInstanceUID": remote_uid})
        assert sum(len(series.instances) for series in retrieved.series) == 3

        fetched_uid = uid("pym-get")
        remote.held.append(pydicom.dcmread(io.BytesIO(make_instance(patient_id="RMT-GET", study_uid=fetched_uid))))
        modality.get("Study", {"StudyInstanceUID": fetched_uid})
        assert [s.uid for s in pyorthanc.find_studies(client, query={"StudyInstanceUID": fetched_uid})] == [fetched_uid]
    finally:
        remote.stop()
        client.close()

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
    # A data set without preamble and meta (pydicom's write_like_original), and a gzip-encoded upload.
    bare = make_instance(patient_id="BARE")
    bare = bare[132 + 12 + int.from_bytes(bare[140:144], "little"):]
    status, _, body = raw_request(server, "POST", "//instances/", bare, {"Expect": ""})
    assert status == 200 and json.loads(body)["Status"] == "Success", body
    status, _, body = raw_request(server, "POST", "/instances", gzip.compress(make_instance(patient_id="GZIP")),
                                  {"Content-Encoding": "gzip", "Content-Type": "application/dicom"})
    assert status == 200 and json.loads(body)["Status"] == "Success", body
    status, _, body = raw_request(server, "GET", "/patients?expand")
    assert {p["MainDicomTags"]["PatientID"] for p in json.loads(body)} == {"OLD", "BARE", "GZIP"}


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


def test_orthanc_api_client_drives_pacsweb(server_factory, worker_factory, listener_factory, tmp_path):
    """orthanc-api-client (the Orthanc team's client) through its public API."""
    server = server_factory()
    worker_factory(server)
    listener = listener_factory(server, ae_title="PACSWEB")
    remote = RemotePacs(servers.free_port(), destinations={"PACSWEB": ("127.0.0.1", listener.port)})
    try:
        client = OrthancApiClient(server.url, user="admin", pwd=servers.ADMIN_PASSWORD)
        assert client.is_alive() and client.is_orthanc_version_at_least(1, 12)

        study_uid = uid("oac")
        files = [make_instance(patient_id="OAC", patient_name="API^CLIENT", study_uid=study_uid, instance_number=n)
                 for n in (1, 2, 3)]
        instance_ids = client.upload(files[0]) + client.upload(zip_of(files[1:]))
        assert len(instance_ids) == 3
        study_id = client.studies.lookup(study_uid)
        assert client.patients.get_all_ids() == [client.studies.get_parent_patient_id(study_id)]
        assert [s.orthanc_id for s in client.studies.find({"PatientName": "API*"}, case_sensitive=False)] == [study_id]
        study = client.studies.get(study_id)
        assert study.main_dicom_tags.get("StudyInstanceUID") == study_uid
        assert study.patient_main_dicom_tags.get("PatientID") == "OAC"
        assert sorted(client.studies.get_instances_ids(study_id)) == sorted(instance_ids)
        [series_id] = client.studies.get_series_ids(study_id)
        assert client.series.get(series_id).main_dicom_tags.get("Modality") == "CT"
        tags = client.instances.get_tags(instance_ids[0])
        assert tags.get("PatientName") == "API^CLIENT" and tags.get("0010,0020") == "OAC"
        assert client.instances.get_file(instance_ids[0]) == files[0]

        client.studies.download_archive(study_id, str(tmp_path / "study.zip"))
        with zipfile.ZipFile(tmp_path / "study.zip") as archive:
            assert len([n for n in archive.namelist() if not n.endswith("/")]) == 3

        # Modalities: send (synchronously, then as a job), query and retrieve.
        client.modalities.configure("remote", {"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port})
        assert client.modalities.get_all_ids() == ["remote"]
        client.modalities.send("remote", study_id)
        assert len(remote.received) == 3
        job = client.modalities.send_async("remote", [instance_ids[0]])
        assert job.wait_completed(timeout=60, polling_interval=0.2)
        assert job.info.status == "Success" and len(remote.received) == 4

        remote_uid = uid("oac-remote")
        remote.held.extend(pydicom.dcmread(io.BytesIO(make_instance(patient_id="RMT-OAC", study_uid=remote_uid,
                                                                     instance_number=n))) for n in (1, 2))
        [found] = client.modalities.query_studies("remote", {"PatientID": "RMT*"})
        assert found.dicom_id == remote_uid
        retrieved = client.modalities.retrieve_study("remote", remote_uid)
        assert retrieved and len(client.studies.get_instances_ids(retrieved)) == 2
        assert server.url and client.get_statistics().instances_count == 5
        assert client.get_metrics().get("orthanc_count_instances") == "5"

        changes, last, done = client.get_changes()
        assert {"NewStudy", "NewInstance"} <= {c.change_type for c in changes}
        client.studies.delete(study_id)
        assert client.studies.get_all_ids() == [retrieved]
        client.delete_all_content()
        assert client.get_statistics().instances_count == 0
    finally:
        remote.stop()
