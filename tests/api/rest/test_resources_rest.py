"""Orthanc's resource routes: lists, details, children, parents, statistics, delete, find, changes."""

import json

import pytest
from django.core.management import call_command

from tests.storing import store_instance
from tests.dicomgen import make_instance, uid


def store(api, **kwargs):
    return store_instance(api, make_instance(rows=8, columns=8, **kwargs))


def study_of(api, count, patient_id="P1", study_key="s1"):
    study_uid, series_uid = uid(patient_id, study_key), uid(patient_id, study_key, "series")
    answers = [store(api, patient_id=patient_id, study_uid=study_uid, series_uid=series_uid, instance_number=n + 1)
               for n in range(count)]
    return answers[0]["ParentStudy"], answers


def test_study_details_have_orthanc_shape(api):
    study_id, answers = study_of(api, 2)
    study = api.get(f"/studies/{study_id}").json()
    assert set(study) == {"ID", "IsStable", "Labels", "LastUpdate", "MainDicomTags", "ParentPatient",
                          "PatientMainDicomTags", "Series", "Type"}
    assert study["Type"] == "Study" and study["IsStable"] is False
    assert study["ParentPatient"] == answers[0]["ParentPatient"]
    assert study["PatientMainDicomTags"]["PatientID"] == "P1"
    assert study["Series"] == [answers[0]["ParentSeries"]]
    assert len(study["LastUpdate"]) == 15 and study["LastUpdate"][8] == "T"
    series = api.get(f"/series/{answers[0]['ParentSeries']}").json()
    assert series["Instances"] == [a["ID"] for a in answers]
    assert series["Status"] == "Unknown" and series["ExpectedNumberOfInstances"] is None
    instance = api.get(f"/instances/{answers[1]['ID']}").json()
    assert instance["IndexInSeries"] == 2 and instance["MainDicomTags"]["InstanceNumber"] == "2"
    assert instance["FileSize"] > 0 and instance["ParentSeries"] == answers[0]["ParentSeries"]
    patient = api.get(f"/patients/{answers[0]['ParentPatient']}").json()
    assert patient["Studies"] == [study_id]


@pytest.mark.parametrize("size", [1, 100])
def test_reads_cost_a_constant_number_of_queries(api, size, django_assert_max_num_queries):
    study_id, answers = study_of(api, size)
    # Each count has the user's row read (remembered Basic credentials are checked
    # against it on every request: a deactivated user is refused at once; a read of
    # one resource reads it in its own lookup, the others in a query of their own),
    # one for the labels of the resources, whatever their number, and for a study's
    # first read by this user in the audit window two more (is there a read row
    # already; the patient and study the new row names).
    with django_assert_max_num_queries(7):
        assert api.get(f"/studies/{study_id}").status_code == 200
    with django_assert_max_num_queries(7):
        assert api.get(f"/series/{answers[0]['ParentSeries']}").status_code == 200
    with django_assert_max_num_queries(8):
        assert len(api.get("/instances?expand").json()) == size
    with django_assert_max_num_queries(8):
        assert len(api.get("/studies?expand").json()) == 1
    with django_assert_max_num_queries(8):
        assert len(api.get(f"/studies/{study_id}/instances").json()) == size


def test_unknown_ids_are_404(api):
    assert api.get("/studies/nope").status_code == 404
    assert api.get("/studies/nope").content == b""  # as Orthanc: empty body on the resource route
    response = api.get("/studies/nope/series")
    assert response.status_code == 404 and response.json()["HttpStatus"] == 404


def test_series_status_from_the_expected_number_of_instances(api):
    def series_with(numbers, **tags):
        key = "-".join(map(str, numbers)) + str(tags)
        answers = [store(api, patient_id="S", study_uid=uid("S", "study"), series_uid=uid("S", key), instance_number=n,
                         sop_uid=uid("S", key, n), **tags) for n in numbers]
        series = api.get(f"/series/{answers[0]['ParentSeries']}").json()
        return series["ExpectedNumberOfInstances"], series["Status"]

    assert series_with([1, 2], ImagesInAcquisition=2, NumberOfTemporalPositions=1) == (2, "Complete")
    assert series_with([1], NumberOfSlices=3) == (3, "Missing")
    assert series_with([1, 4], CardiacNumberOfImages=2) == (2, "Inconsistent")
    assert series_with([1]) == (None, "Unknown")


def test_main_tags_short_and_full_as_orthanc(api):
    study_id, answers = study_of(api, 1)
    short = api.get(f"/studies/{study_id}?short").json()
    assert short["MainDicomTags"]["0008,0050"] == "ACC0001"
    assert short["PatientMainDicomTags"]["0010,0020"] == "P1"
    full = api.get(f"/patients/{answers[0]['ParentPatient']}/studies?full").json()
    assert full[0]["MainDicomTags"]["0008,0050"] == {"Name": "AccessionNumber", "Type": "String", "Value": "ACC0001"}
    assert api.get("/series?expand&short").json()[0]["MainDicomTags"]["0008,0060"] == "CT"
    assert api.get(f"/instances/{answers[0]['ID']}/study?short").json()["MainDicomTags"]["0020,0010"] == "1"


def test_requested_tags_as_orthanc_1_12(api, django_assert_max_num_queries):
    study_id, answers = study_of(api, 2)
    keys = "requestedTags=ModalitiesInStudy;NumberOfStudyRelatedInstances;PatientName"
    with django_assert_max_num_queries(7):  # the user's row and the labels included
        listed = api.get(f"/studies?expand&{keys}").json()
    assert listed[0]["RequestedTags"] == {"ModalitiesInStudy": "CT", "NumberOfStudyRelatedInstances": "2",
                                          "PatientName": "DOE^JANE"}
    assert api.get(f"/studies/{study_id}?{keys}").json()["RequestedTags"] == listed[0]["RequestedTags"]
    children = api.get(f"/series/{answers[0]['ParentSeries']}/instances?requestedTags=InstanceNumber").json()
    assert sorted(c["RequestedTags"]["InstanceNumber"] for c in children) == ["1", "2"]
    assert "RequestedTags" not in api.get(f"/studies/{study_id}").json()
    assert api.get(f"/studies/{study_id}?requestedTags=NotAKeyword").status_code == 400


def test_lists_page_with_since_and_limit(api):
    ids = [store(api, patient_id=f"P{n}")["ParentPatient"] for n in range(5)]
    assert api.get("/patients").json() == ids
    assert api.get("/patients?since=1&limit=2").json() == ids[1:3]
    assert api.get("/patients?limit=x").status_code == 400
    # As Orthanc: one of the two alone is refused rather than defaulted.
    assert api.get("/patients?since=1").status_code == 400
    assert api.get("/patients?limit=2").status_code == 400


def test_children_and_parents(api):
    study_id, answers = study_of(api, 3)
    assert [s["ID"] for s in api.get(f"/studies/{study_id}/series").json()] == [answers[0]["ParentSeries"]]
    assert [i["ID"] for i in api.get(f"/patients/{answers[0]['ParentPatient']}/instances").json()] == [a["ID"] for a in answers]
    assert api.get(f"/instances/{answers[0]['ID']}/study").json()["ID"] == study_id
    assert api.get(f"/instances/{answers[0]['ID']}/series").json()["ID"] == answers[0]["ParentSeries"]
    assert api.get(f"/series/{answers[0]['ParentSeries']}/patient").json()["ID"] == answers[0]["ParentPatient"]


def test_statistics_of_a_study(api):
    study_id, answers = study_of(api, 3)
    stats = api.get(f"/studies/{study_id}/statistics").json()
    assert stats["CountInstances"] == 3 and stats["CountSeries"] == 1
    size = sum(api.get(f"/instances/{a['ID']}").json()["FileSize"] for a in answers)
    assert stats["DiskSize"] == str(size)


def stored_files(storage_dir):
    return [p for p in storage_dir.rglob("*") if p.is_file() and p.parent.name not in ("tmp", "archives")]


def removed_by_the_housekeeper(settings):
    # No worker runs in this process: the housekeeper removes what the deletion
    # queue did not (here at once: outbox rows of any age are its own).
    settings.HOUSEKEEPER_INTERVAL = 0
    call_command("housekeeper", "--once")


def test_delete_instance_then_last_one_removes_the_ancestors(api, storage_dir, settings):
    study_id, answers = study_of(api, 2)
    other_study, _ = study_of(api, 1, patient_id="P1", study_key="s2")
    response = api.delete(f"/instances/{answers[0]['ID']}")
    assert response.json() == {"RemainingAncestor": {"ID": answers[0]["ParentSeries"], "Path": f"/series/{answers[0]['ParentSeries']}", "Type": "Series"}}
    assert api.get(f"/instances/{answers[0]['ID']}").status_code == 404
    response = api.delete(f"/instances/{answers[1]['ID']}")
    # The series and the study are gone with their last instance; the patient keeps its other study.
    assert response.json()["RemainingAncestor"]["Type"] == "Patient"
    assert api.get(f"/studies/{study_id}").status_code == 404
    assert api.get(f"/studies/{other_study}").status_code == 200
    assert api.get("/statistics").json()["CountInstances"] == 1
    removed_by_the_housekeeper(settings)
    assert len(stored_files(storage_dir)) == 1
    assert api.delete(f"/instances/{answers[1]['ID']}").status_code == 404


def test_delete_patient_removes_everything_below(api, storage_dir, settings):
    study_of(api, 3)
    patient_id = study_of(api, 2, study_key="s2")[1][0]["ParentPatient"]
    assert api.delete(f"/patients/{patient_id}").json() == {"RemainingAncestor": None}
    assert api.get("/statistics").json()["CountInstances"] == 0
    assert len(stored_files(storage_dir)) == 5  # the answer did not wait for the files
    removed_by_the_housekeeper(settings)
    assert stored_files(storage_dir) == []
    kinds = [c["ChangeType"] for c in api.get("/changes?limit=1000").json()["Changes"]]
    # As Orthanc, the changes of deleted resources go with them; the Deleted change stays.
    assert kinds == ["Deleted"]


def test_deleting_one_series_keeps_the_changes_of_the_rest(api):
    study_id, answers = study_of(api, 1)
    other = store(api, patient_id="P1", study_uid=uid("P1", "s1"), series_uid=uid("P1", "other series"))
    api.delete(f"/series/{other['ParentSeries']}")
    changes = api.get("/changes").json()["Changes"]
    assert [(c["ChangeType"], c["ID"]) for c in changes] == [
        ("NewInstance", answers[0]["ID"]), ("NewSeries", answers[0]["ParentSeries"]), ("NewStudy", study_id),
        ("NewPatient", answers[0]["ParentPatient"]), ("Deleted", other["ParentSeries"])]


def find(api, body):
    return api.post("/tools/find", json.dumps(body), content_type="application/json")


def test_tools_find_wildcards_ranges_lists_and_expand(api):
    store(api, patient_id="A1", patient_name="SMITH^JOHN", study_date="20200105", accession_number="X1")
    store(api, patient_id="A2", patient_name="Smythe^Jane", study_date="20210301", accession_number="X2")
    b = store(api, patient_id="B1", patient_name="JONES^BOB", study_date="20190101", accession_number="Y9")
    assert len(find(api, {"Level": "Study", "Query": {"PatientName": "sm*"}}).json()) == 2
    assert len(find(api, {"Level": "Study", "Query": {"PatientName": "SM?TH^*"}}).json()) == 1
    assert len(find(api, {"Level": "Study", "Query": {"StudyDate": "20200101-20211231"}}).json()) == 2
    assert len(find(api, {"Level": "Study", "Query": {"StudyDate": "-20191231"}}).json()) == 1
    assert len(find(api, {"Level": "Patient", "Query": {"PatientID": "A1\\B1"}}).json()) == 2
    expanded = find(api, {"Level": "Study", "Query": {"AccessionNumber": "Y9"}, "Expand": True,
                          "RequestedTags": ["NumberOfStudyRelatedInstances", "ModalitiesInStudy"]}).json()
    assert [s["ID"] for s in expanded] == [b["ParentStudy"]]
    assert expanded[0]["RequestedTags"] == {"NumberOfStudyRelatedInstances": "1", "ModalitiesInStudy": "CT"}
    assert len(find(api, {"Level": "Instance", "Query": {}, "Limit": 2}).json()) == 2


@pytest.mark.parametrize("body", ["{not json", '{"Level": "Planet", "Query": {}}', '{"Level": "Study", "Query": []}',
                                  '{"Level": "Study"}',
                                  '{"Level": "Study", "Query": {"PatientName": 5}}', '{"Level": "Study", "Limit": "ten"}', "[]"])
def test_malformed_find_is_400_with_a_message(api, body):
    response = api.post("/tools/find", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["Details"]


def test_changes_page_and_clear(api):
    study_of(api, 2)
    changes = api.get("/changes").json()
    assert [c["ChangeType"] for c in changes["Changes"]] == ["NewInstance", "NewSeries", "NewStudy", "NewPatient", "NewInstance"]
    assert changes["Done"] is True and changes["Last"] == changes["Changes"][-1]["Seq"]
    first = changes["Changes"][0]["Seq"]
    page = api.get(f"/changes?since={first}&limit=2").json()
    assert [c["Seq"] for c in page["Changes"]] == [first + 1, first + 2] and page["Done"] is False
    last = api.get(f"/changes?last&since={first}&limit=2").json()
    assert last == {"Changes": [changes["Changes"][-1]], "Done": True, "Last": changes["Last"]}
    assert api.delete("/changes").status_code == 200
    assert api.get("/changes?last").json() == {"Changes": [], "Done": True, "Last": 0}
    assert api.get("/changes").json()["Changes"] == []
