"""/worklists: create, list, read and cancel worklist items in the DICOM JSON model."""

import json

from django.contrib.auth.models import Group
from django.test import Client

from tests import servers

ITEM = {
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]},
    "00100020": {"vr": "LO", "Value": ["P-REST-1"]},
    "00100030": {"vr": "DA", "Value": ["19700101"]},
    "00100040": {"vr": "CS", "Value": ["F"]},
    "00080050": {"vr": "SH", "Value": ["ACC-REST-1"]},
    "00401001": {"vr": "SH", "Value": ["RP-1"]},
    "00321060": {"vr": "LO", "Value": ["CT CHEST"]},
    "00380010": {"vr": "LO", "Value": ["ADM-1"]},  # Admission ID: no column holds it, kept as given
    "00400100": {"vr": "SQ", "Value": [{
        "00400001": {"vr": "AE", "Value": ["CT1"]},
        "00400002": {"vr": "DA", "Value": ["20250310"]},
        "00400003": {"vr": "TM", "Value": ["090000"]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
        "00400009": {"vr": "SH", "Value": ["SPS-1"]},
        "00400006": {"vr": "PN", "Value": [{"Alphabetic": "TECH^TOM"}]},
    }]},
}


def create(api, body=ITEM):
    return api.post("/worklists", json.dumps(body), content_type="application/json")


def test_an_item_created_from_dicom_json_is_listed_read_and_cancelled(api):
    response = create(api)
    assert response.status_code == 200, response.content
    created = response.json()
    assert created["Path"] == f"/worklists/{created['ID']}"

    [item] = api.get("/worklists").json()
    assert (item["ID"], item["Status"]) == (created["ID"], "SCHEDULED")
    dataset = item["Dataset"]
    assert dataset["00100010"]["Value"] == [{"Alphabetic": "DOE^JANE"}]
    assert dataset["00380010"]["Value"] == ["ADM-1"]
    assert dataset["0020000D"]["Value"][0].startswith("1.2.")  # a Study Instance UID was generated
    [step] = dataset["00400100"]["Value"]
    assert step["00400001"]["Value"] == ["CT1"] and step["00400009"]["Value"] == ["SPS-1"]
    assert step["00400006"]["Value"] == [{"Alphabetic": "TECH^TOM"}]
    assert step["00400020"]["Value"] == ["SCHEDULED"]
    assert api.get(created["Path"]).json() == item

    assert api.delete(created["Path"]).status_code == 200
    assert api.get("/worklists").json() == []
    [cancelled] = api.get("/worklists?all").json()
    assert cancelled["Status"] == "CANCELLED"


def test_the_list_matches_like_a_worklist_query(api):
    create(api)
    other = json.loads(json.dumps(ITEM))
    other["00100020"]["Value"] = ["P-REST-2"]
    other["00100010"]["Value"] = [{"Alphabetic": "MÜLLER^HANS"}]
    other["00400100"]["Value"][0]["00400001"]["Value"] = ["MR1"]
    other["00400100"]["Value"][0]["00400009"]["Value"] = ["SPS-2"]
    create(api, other)
    assert [i["Dataset"]["00100020"]["Value"] for i in api.get("/worklists?ScheduledStationAETitle=MR1").json()] \
        == [["P-REST-2"]]
    assert len(api.get("/worklists?PatientName=muller*").json()) == 1
    assert len(api.get("/worklists?ScheduledProcedureStepStartDate=20250301-20250331").json()) == 2
    assert len(api.get("/worklists?limit=1").json()) == 1
    assert api.get("/worklists?Bogus=1").status_code == 400


def test_bad_bodies_and_unknown_items_are_refused(api):
    assert api.post("/worklists", b"{not json", content_type="application/json").status_code == 400
    assert api.post("/worklists", b"[]", content_type="application/json").status_code == 400
    no_patient = {k: v for k, v in ITEM.items() if k != "00100020"}
    response = create(api, no_patient)
    assert response.status_code == 400 and "patient ID" in response.json()["Details"]
    bad_date = json.loads(json.dumps(ITEM))
    bad_date["00400100"]["Value"][0]["00400002"]["Value"] = ["2025-03-10"]
    assert create(api, bad_date).status_code == 400
    assert api.get("/worklists/999").status_code == 404
    assert api.delete("/worklists/999").status_code == 404
    assert api.get("/worklists/99999999999999999999999").status_code == 404


def test_a_viewer_reads_the_worklist_and_an_admin_writes_it(api, django_user_model):
    create(api)
    user = django_user_model.objects.create_user("reader", password="pw-reader")
    user.groups.add(Group.objects.get(name="viewer"))
    viewer = Client(HTTP_AUTHORIZATION=servers.auth_header("reader", "pw-reader"))
    [item] = viewer.get("/worklists").json()
    assert viewer.get(item["Path"]).status_code == 200
    assert viewer.post("/worklists", json.dumps(ITEM), content_type="application/json").status_code == 403
    assert viewer.delete(item["Path"]).status_code == 403
    assert Client().get("/worklists").status_code == 401
