"""Orthanc's /tools/... routes, /plugins, /exports: answers as Orthanc gives them."""

import datetime
import re

from tests.dicomgen import make_instance, uid
from tests.storing import store_instance


def test_tools_lists_the_operations_it_answers(api):
    listed = api.get("/tools").json()
    assert {"find", "lookup", "now", "generate-uid", "metrics-prometheus", "create-archive"} <= set(listed)
    for name in listed:
        method = "post" if name in ("find", "lookup", "bulk-content", "count-resources", "dicom-echo",
                                    "invalidate-tags", "create-archive", "create-media",
                                    "create-media-extended") else "get"
        assert getattr(api, method)(f"/tools/{name}").status_code != 404, name


def test_now_is_orthanc_timestamp_in_utc(api):
    response = api.get("/tools/now")
    assert response["Content-Type"].startswith("text/plain")
    moment = datetime.datetime.strptime(response.content.decode(), "%Y%m%dT%H%M%S").replace(tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - moment).total_seconds()) < 60
    assert re.fullmatch(r"\d{8}T\d{6}", api.get("/tools/now-local").content.decode())


def test_generate_uid_needs_a_level_and_gives_a_valid_uid(api):
    text = api.get("/tools/generate-uid?level=study").content.decode()
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)*", text) and len(text) <= 64
    assert text != api.get("/tools/generate-uid?level=study").content.decode()
    assert api.get("/tools/generate-uid").status_code == 400


def test_settings_orthanc_changes_per_process_are_read_only_here(api):
    assert api.get("/tools/default-encoding").content == b"Latin1"
    assert api.put("/tools/default-encoding", "Utf8", content_type="text/plain").status_code == 400
    assert api.get("/tools/log-level").content.decode() in ("default", "verbose", "trace")
    assert api.get("/tools/log-level-dicom").status_code == 200
    bogus = api.put("/tools/log-level", "bogus", content_type="text/plain")
    assert bogus.status_code == 400 and bogus.json()["OrthancStatus"] == 3
    current = api.get("/tools/log-level").content
    assert api.put("/tools/log-level", current, content_type="text/plain").status_code == 200
    assert "1.2.840.10008.1.2.1" in api.get("/tools/accepted-transfer-syntaxes").json()
    assert api.post("/tools/invalidate-tags").status_code == 200


def test_lookup_finds_each_level_by_its_identifier(api):
    study_uid = uid("lookup")
    stored = store_instance(api, make_instance(patient_id="LOOK", study_uid=study_uid))
    assert api.post("/tools/lookup", "LOOK", content_type="text/plain").json() == [
        {"ID": stored["ParentPatient"], "Path": f"/patients/{stored['ParentPatient']}", "Type": "Patient"}]
    assert [a["ID"] for a in api.post("/tools/lookup", study_uid, content_type="text/plain").json()] == \
        [stored["ParentStudy"]]
    assert api.post("/tools/lookup", "nothing", content_type="text/plain").json() == []


def test_bulk_content_describes_resources_or_their_level(api):
    first = store_instance(api, make_instance(patient_id="BULK", instance_number=1))
    second = store_instance(api, make_instance(patient_id="BULK", instance_number=2))
    answer = api.post("/tools/bulk-content", {"Resources": [first["ParentStudy"], first["ID"]]},
                      content_type="application/json").json()
    assert [(a["Type"], a["ID"]) for a in answer] == [("Study", first["ParentStudy"]), ("Instance", first["ID"])]
    assert {k: v for k, v in answer[0].items() if k != "Metadata"} == api.get(f"/studies/{first['ParentStudy']}").json()
    assert isinstance(answer[0]["Metadata"], dict) and isinstance(answer[1]["Metadata"], dict)
    instances = api.post("/tools/bulk-content", {"Resources": [first["ParentStudy"]], "Level": "Instance"},
                         content_type="application/json").json()
    assert sorted(a["ID"] for a in instances) == sorted([first["ID"], second["ID"]])
    unknown = api.post("/tools/bulk-content", {"Resources": ["nope", first["ID"]]}, content_type="application/json")
    assert [a["ID"] for a in unknown.json()] == [first["ID"]]  # unknown ids left out, as Orthanc does


def test_count_resources_counts_what_find_finds(api):
    for n, name in enumerate(["ALPHA^ONE", "ALPHA^TWO", "BETA^ONE"]):
        store_instance(api, make_instance(patient_id=f"C{n}", patient_name=name))
    body = {"Level": "Patient", "Query": {"PatientName": "ALPHA*"}}
    assert api.post("/tools/count-resources", body, content_type="application/json").json() == {"Count": 2}
    assert len(api.post("/tools/find", body, content_type="application/json").json()) == 2
    assert api.post("/tools/count-resources", {"Level": "Nope"}, content_type="application/json").status_code == 400


def test_metrics_prometheus_has_orthanc_gauges_and_pacsweb_counters(api):
    store_instance(api, make_instance())
    text = api.get("/tools/metrics-prometheus").content.decode()
    assert re.search(r"^orthanc_count_instances 1 \d+$", text, re.M)
    assert "pacs_instances_stored_total" in text
    assert api.get("/tools/metrics").content == b"1"


def test_plugins_and_exports_are_empty_as_on_a_plain_orthanc(api):
    assert api.get("/plugins").json() == []
    assert api.get("/exports").json() == {"Done": True, "Exports": [], "Last": 0}
