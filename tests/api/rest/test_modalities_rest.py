"""Modalities over REST, and pacsweb as an SCU against a pynetdicom SCP started by the test."""

import io
import json

import pydicom
import pytest

from tests import servers
from tests.peers import RemotePacs
from tests.dicomgen import make_instance, uid
from tests.storing import store_on


@pytest.fixture
def remote():
    pacs = RemotePacs(servers.free_port())
    yield pacs
    pacs.stop()


def put_modality(server, name, body):
    return servers.request_json(f"{server.url}/modalities/{name}", method="PUT", body=json.dumps(body).encode())


def test_modalities_are_created_listed_shown_and_deleted(server_factory):
    server = server_factory()
    assert put_modality(server, "ct1", {"AET": "CT1", "Host": "10.0.0.5", "Port": 104, "AllowFind": False}) == (200, {})
    assert put_modality(server, "mr1", ["MR1", "10.0.0.6", 11112]) == (200, {})
    assert servers.request_json(server.url + "/modalities") == (200, ["ct1", "mr1"])
    status, expanded = servers.request_json(server.url + "/modalities?expand")
    assert expanded["ct1"]["AET"] == "CT1" and expanded["ct1"]["AllowFind"] is False
    assert expanded["mr1"]["Port"] == 11112 and expanded["mr1"]["AllowFind"] is True
    status, config = servers.request_json(server.url + "/modalities/ct1/configuration")
    assert (status, config["Host"]) == (200, "10.0.0.5")
    # Orthanc's fields: storage commitment as its two DIMSE services, no local AE title as "".
    assert (config["AllowNAction"], config["AllowEventReport"], config["LocalAet"]) == (True, True, "")
    assert servers.request_json(server.url + "/modalities/ct1", method="DELETE") == (200, {})
    assert servers.request_json(server.url + "/modalities") == (200, ["mr1"])
    status, body = servers.request_json(server.url + "/modalities/ct1/configuration")
    assert status == 404


def test_invalid_modality_is_refused_and_changes_nothing(server_factory):
    server = server_factory()
    for body in ({"AET": "X", "Host": "h"}, {"AET": "X" * 17, "Host": "h", "Port": 104},
                 {"AET": "X", "Host": "h", "Port": 70000}, ["X", "h"], {"AET": "X", "Host": "h", "Port": 1, "AllowFind": "yes"}):
        status, answer = put_modality(server, "bad", body)
        assert status == 400, body
        assert answer["Details"]
    status, _, _ = servers.request(server.url + "/modalities/bad", method="PUT", body=b"{not json")
    assert status == 400
    assert servers.request_json(server.url + "/modalities") == (200, [])


def test_echo_succeeds_against_a_live_scp_and_fails_clearly_otherwise(server_factory, remote):
    server = server_factory()
    put_modality(server, "remote", {"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port})
    put_modality(server, "nobody", {"AET": "NOBODY", "Host": "127.0.0.1", "Port": servers.free_port()})
    assert servers.request_json(server.url + "/modalities/remote/echo", method="POST", body=b"{}") == (200, {})
    status, answer = servers.request_json(server.url + "/modalities/nobody/echo", method="POST", body=b"{}")
    assert status == 502
    assert "NOBODY" in answer["Details"]
    assert servers.request_json(server.url + "/modalities/unknown/echo", method="POST", body=b"{}")[0] == 404


def test_store_sends_every_instance_of_a_study(server_factory, remote):
    server = server_factory()
    put_modality(server, "remote", {"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port})
    sent = {}
    for n in range(1, 4):
        data = make_instance(patient_id="SEND", instance_number=n)
        status, answer = servers.request_json(server.url + "/instances", method="POST", body=data)
        sent[pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID] = data
        study = answer["ParentStudy"]
    status, answer = servers.request_json(server.url + "/modalities/remote/store", method="POST",
                                          body=json.dumps({"Resources": [study]}).encode())
    assert status == 200
    assert (answer["InstancesCount"], answer["FailedInstancesCount"]) == (3, 0)
    assert sorted(ds.SOPInstanceUID for ds in remote.received) == sorted(sent)
    for ds in remote.received:
        original = pydicom.dcmread(io.BytesIO(sent[ds.SOPInstanceUID]))
        assert ds.PixelData == original.PixelData


def remote_study(remote, patient_id, count):
    study_uid = uid(patient_id, "remote-study")
    for n in range(count):
        remote.held.append(pydicom.dcmread(io.BytesIO(make_instance(
            patient_id=patient_id, patient_name="REMOTE^PAT", study_uid=study_uid, instance_number=n + 1))))
    return study_uid


@pytest.mark.parametrize("method", ["C-MOVE", "C-GET"])
def test_query_then_retrieve_brings_the_study_into_the_archive(server_factory, listener_factory, remote, method):
    server = server_factory()
    listener = listener_factory(server, ae_title="PACSWEB")
    remote.destinations["PACSWEB"] = ("127.0.0.1", listener.port)
    study_uid = remote_study(remote, "RMT-1", 4)
    remote_study(remote, "OTHER-9", 2)
    put_modality(server, "remote", {"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port})

    status, created = servers.request_json(server.url + "/modalities/remote/query", method="POST",
                                           body=json.dumps({"Level": "Study", "Query": {"PatientID": "RMT*"}}).encode())
    assert status == 200
    query_path = server.url + created["Path"]
    assert servers.request_json(query_path + "/answers") == (200, ["0"])
    status, content = servers.request_json(query_path + "/answers/0/content?simplify")
    assert content["StudyInstanceUID"] == study_uid
    # As Orthanc: the query by tag, with name and type (tests/compat checks the answers' keys).
    assert servers.request_json(query_path + "/query")[1] == {
        "0010,0020": {"Name": "PatientID", "Type": "String", "Value": "RMT*"}}
    status, full = servers.request_json(query_path + "/answers/0/content")
    assert full["0020,000d"]["Value"] == study_uid

    status, report = servers.request_json(query_path + "/retrieve", method="POST",
                                          body=json.dumps({"TargetAet": "PACSWEB", "RetrieveMethod": method}).encode())
    assert status == 200, report
    assert (report["CompletedCount"], report["FailedCount"]) == (4, 0)
    status, jobs = servers.request_json(server.url + "/jobs?expand")  # a retrieve is a job, listed
    assert [(j["Type"], j["State"], j["Progress"]) for j in jobs] == \
        [("DicomMoveScu" if method == "C-MOVE" else "DicomGetScu", "Success", 100)]
    assert server.sql("SELECT count(*) FROM instance") == [(4,)]
    assert server.sql("SELECT DISTINCT study_instance_uid FROM study") == [(study_uid,)]
    assert len(server.storage_files()) == 4


def test_unknown_query_is_404_and_bad_query_is_400(server_factory, remote):
    server = server_factory()
    put_modality(server, "remote", {"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port})
    assert servers.request_json(server.url + "/queries/nope/answers")[0] == 404
    status, answer = servers.request_json(server.url + "/modalities/remote/query", method="POST",
                                          body=json.dumps({"Level": "Galaxy", "Query": {}}).encode())
    assert status == 400 and "Level" in answer["Details"]


def test_store_takes_a_plain_text_id_and_orthanc_options(server_factory, remote):
    server = server_factory()
    put_modality(server, "remote", {"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port})
    stored = store_on(server, make_instance(patient_id="OPT"))
    store = server.url + "/modalities/remote/store"
    # One id as plain text, as Orthanc accepts it.
    status, answer = servers.request_json(store, method="POST", body=stored["ID"].encode(),
                                          headers={"Content-Type": "text/plain"})
    assert status == 200, answer
    assert answer["InstancesCount"] == 1 and len(remote.received) == 1
    options = {"Resources": [stored["ParentStudy"]], "Synchronous": True, "Priority": 3, "Permissive": True,
               "MoveOriginatorAet": "VIEWER", "MoveOriginatorID": 42, "Timeout": 30, "LocalAet": "SENDER"}
    status, answer = servers.request_json(store, method="POST", body=json.dumps(options).encode())
    assert status == 200, answer
    assert remote.originators[-1] == ("VIEWER", 42)
    status, job = servers.request_json(store, method="POST",
                                       body=json.dumps({"Resources": [stored["ID"]], "Asynchronous": True}).encode())
    assert status == 200 and job["Path"] == f"/jobs/{job['ID']}"
    for bad in ({"Resources": [stored["ID"]], "Permissive": "yes"}, {"Resources": [stored["ID"]], "MoveOriginatorID": 1},
                {"Resources": [stored["ID"]], "Timeout": -1}):
        assert servers.request_json(store, method="POST", body=json.dumps(bad).encode())[0] == 400, bad
    assert servers.request_json(store, method="POST", body=b"two ids")[0] == 400


def test_store_straight_sends_a_file_that_is_not_stored_here(api, remote):
    api.put("/modalities/remote", {"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port},
            content_type="application/json")
    data = make_instance(patient_id="STRAIGHT")
    answer = api.generic("POST", "/modalities/remote/store-straight", data, content_type="application/dicom")
    assert answer.status_code == 200, answer.content
    sent = pydicom.dcmread(io.BytesIO(data))
    assert answer.json() == {"SOPClassUID": sent.SOPClassUID, "SOPInstanceUID": sent.SOPInstanceUID}
    assert [ds.SOPInstanceUID for ds in remote.received] == [sent.SOPInstanceUID]
    assert api.get("/statistics").json()["CountInstances"] == 0
    assert api.generic("POST", "/modalities/remote/store-straight", b"not dicom").status_code == 400


def test_dicom_echo_of_an_unregistered_modality(api, remote):
    assert api.post("/tools/dicom-echo", {"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port},
                    content_type="application/json").json() == {}
    down = api.post("/tools/dicom-echo", {"AET": "DOWN", "Host": "127.0.0.1", "Port": servers.free_port()},
                    content_type="application/json")
    assert down.status_code == 502 and "DOWN" in down.json()["Details"]
    assert api.post("/tools/dicom-echo", {"AET": "X"}, content_type="application/json").status_code == 400


def test_legacy_find_routes_and_the_list_of_queries(api, remote):
    study_uid = remote_study(remote, "LEG-1", 1)
    api.put("/modalities/remote", {"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port},
            content_type="application/json")
    assert api.get("/queries").json() == []
    found = api.post("/modalities/remote/find-study", {"PatientID": "LEG*"}, content_type="application/json")
    assert found.status_code == 200, found.content
    assert [(a["PatientID"], a["StudyInstanceUID"]) for a in found.json()] == [("LEG-1", study_uid)]
    first = api.post("/modalities/remote/query", {"Level": "Study", "Query": {"PatientID": "LEG*"}},
                     content_type="application/json").json()["ID"]
    second = api.post("/modalities/remote/query", {"Level": "Study", "Query": {}},
                      content_type="application/json").json()["ID"]
    assert api.get("/queries").json() == [first, second]


def test_find_worklist_queries_a_modality_worklist(server_factory, listener_factory):
    # pacsweb's own worklist, queried through its DICOM listener as a remote one.
    server = server_factory()
    listener = listener_factory(server, ae_title="PACSWEB")
    item = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "WORK^LIST"}]},
            "00100020": {"vr": "LO", "Value": ["P-WL-1"]},
            "00080050": {"vr": "SH", "Value": ["ACC-WL-1"]},
            "00400100": {"vr": "SQ", "Value": [{"00400001": {"vr": "AE", "Value": ["CT1"]},
                                                "00400002": {"vr": "DA", "Value": ["20250310"]},
                                                "00080060": {"vr": "CS", "Value": ["CT"]}}]}}
    status, _ = servers.request_json(server.url + "/worklists", method="POST", body=json.dumps(item).encode())
    assert status == 200
    put_modality(server, "self", {"AET": "PACSWEB", "Host": "127.0.0.1", "Port": listener.port})
    query = {"PatientID": "P-WL*", "PatientName": "", "AccessionNumber": "",
             "ScheduledProcedureStepSequence": [{"Modality": "CT", "ScheduledStationAETitle": ""}]}
    status, answers = servers.request_json(server.url + "/modalities/self/find-worklist", method="POST",
                                           body=json.dumps({"Query": query}).encode())
    assert status == 200, answers
    [answer] = answers
    assert (answer["PatientID"], answer["PatientName"], answer["AccessionNumber"]) == ("P-WL-1", "WORK^LIST", "ACC-WL-1")
    assert answer["ScheduledProcedureStepSequence"][0]["ScheduledStationAETitle"] == "CT1"
    # The query alone as the body, as before Orthanc 1.9; Short gives the tags.
    status, answers = servers.request_json(server.url + "/modalities/self/find-worklist", method="POST",
                                           body=json.dumps({"PatientID": "NOBODY"}).encode())
    assert (status, answers) == (200, [])
    status, answers = servers.request_json(server.url + "/modalities/self/find-worklist", method="POST",
                                           body=json.dumps({"Query": {"PatientID": "P-WL-1"}, "Short": True}).encode())
    assert answers[0]["0010,0020"] == "P-WL-1"
