"""The routes of an Orthanc peer that need no peer to answer (the differential corpus
sends store-straight to a real Orthanc)."""

import json

from tests.dicomgen import make_instance


def test_store_straight_to_an_unreachable_peer_is_502_and_stores_nothing_here(api):
    assert api.put("/peers/away", json.dumps({"Url": "http://127.0.0.1:1/"}), content_type="application/json").status_code == 200
    assert "store-straight" in api.get("/peers/away").json()
    answer = api.post("/peers/away/store-straight", make_instance(patient_id="STRAIGHT"), content_type="application/dicom")
    assert answer.status_code == 502 and answer.json()["OrthancError"] == "Error in the network protocol"
    assert api.get("/patients").json() == []
    assert api.post("/peers/nowhere/store-straight", b"x", content_type="application/dicom").status_code == 404
