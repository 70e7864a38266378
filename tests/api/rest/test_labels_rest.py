"""Labels (Orthanc 1.12): put, get, delete at every level, /tools/labels, /tools/find
with each constraint, names refused as Orthanc refuses them, concurrent writers."""

import threading

import pytest
from django.db import connection

from archive import labels
from archive.models import Level
from tests.dicomgen import make_instance

PLURALS = ("patients", "studies", "series", "instances")


def stored(api, **fields):
    response = api.generic("POST", "/instances", make_instance(**fields), content_type="application/dicom")
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def ids(api):
    answer = stored(api, patient_id="LAB-1")
    return {"patients": answer["ParentPatient"], "studies": answer["ParentStudy"],
            "series": answer["ParentSeries"], "instances": answer["ID"]}


@pytest.mark.parametrize("plural", PLURALS)
def test_put_get_delete_a_label_at_every_level(api, ids, plural):
    url = f"/{plural}/{ids[plural]}/labels"
    assert api.get(url).json() == []
    assert api.get(url + "/project-1").status_code == 404
    put = api.put(url + "/project-1")
    assert (put.status_code, put.content) == (200, b"")
    assert api.put(url + "/project-1").status_code == 200  # idempotent
    assert api.put(url + "/Alpha_2").status_code == 200
    assert api.get(url).json() == ["Alpha_2", "project-1"]
    assert api.get(url + "/project-1").status_code == 200
    assert api.get(f"/{plural}/{ids[plural]}").json()["Labels"] == ["Alpha_2", "project-1"]
    assert api.get("/tools/labels").json() == ["Alpha_2", "project-1"]
    assert api.delete(url + "/project-1").status_code == 200
    assert api.delete(url + "/project-1").status_code == 200  # absent: no error, as Orthanc
    assert api.get(url).json() == ["Alpha_2"]


def test_labels_appear_in_expanded_lists_and_children(api, ids):
    api.put(f"/series/{ids['series']}/labels/ct")
    assert api.get("/series?expand").json()[0]["Labels"] == ["ct"]
    assert api.get(f"/studies/{ids['studies']}/series").json()[0]["Labels"] == ["ct"]
    assert api.get(f"/studies/{ids['studies']}").json()["Labels"] == []


@pytest.mark.parametrize("name", ["", "a.b", "with space", "é", "x" * 65, "a&b"])
def test_invalid_label_names_are_refused(api, ids, name):
    response = api.put(f"/studies/{ids['studies']}/labels/{name}")
    if name == "":
        assert response.status_code in (400, 404, 405)
        return
    assert response.status_code == 400
    assert response.json()["OrthancStatus"] == 3
    assert "alphanumeric" in response.json()["Details"]
    assert api.get(f"/studies/{ids['studies']}/labels").json() == []


def test_system_says_labels_are_supported(api, db):
    assert api.get("/system").json()["HasLabels"] is True


def test_unknown_resource_is_404(api, db):
    assert api.get("/studies/nope/labels").status_code == 404
    assert api.put("/studies/nope/labels/x").status_code == 404


def test_deleting_a_resource_removes_its_labels(api, ids):
    api.put(f"/studies/{ids['studies']}/labels/gone")
    api.put(f"/instances/{ids['instances']}/labels/gone-too")
    assert api.delete(f"/patients/{ids['patients']}").status_code == 200
    assert api.get("/tools/labels").json() == []


def test_find_with_each_labels_constraint(api):
    studies = [stored(api, patient_id=f"FIND-{n}")["ParentStudy"] for n in range(3)]
    api.put(f"/studies/{studies[0]}/labels/a")
    api.put(f"/studies/{studies[0]}/labels/b")
    api.put(f"/studies/{studies[1]}/labels/a")

    def find(**body):
        response = api.post("/tools/find", {"Level": "Study", "Query": {}, **body}, content_type="application/json")
        assert response.status_code == 200, response.content
        return sorted(response.json())

    assert find(Labels=["a", "b"]) == sorted(studies[:1])
    assert find(Labels=["a", "b"], LabelsConstraint="All") == sorted(studies[:1])
    assert find(Labels=["a", "b"], LabelsConstraint="Any") == sorted(studies[:2])
    assert find(Labels=["a"], LabelsConstraint="None") == sorted(studies[2:])
    assert find(Labels=[], LabelsConstraint="None") == sorted(studies)
    assert find(Labels=["b"], Query={"PatientID": "FIND-1"}) == []
    expanded = api.post("/tools/find", {"Level": "Study", "Query": {}, "Labels": ["b"], "Expand": True},
                        content_type="application/json").json()
    assert [s["Labels"] for s in expanded] == [["a", "b"]]
    bad = api.post("/tools/find", {"Level": "Study", "Query": {}, "Labels": ["no way"]}, content_type="application/json")
    assert bad.status_code == 400
    bad = api.post("/tools/find", {"Level": "Study", "Query": {}, "Labels": ["a"], "LabelsConstraint": "Some"},
                   content_type="application/json")
    assert bad.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_concurrent_puts_on_one_resource_lose_no_label(api):
    study = stored(api, patient_id="RACE-LABELS")["ParentStudy"]
    barrier = threading.Barrier(8)
    errors = []

    def writer(n):
        try:
            barrier.wait()
            for round_ in range(5):
                labels.add_label(Level.STUDY, study, f"w{n}-{round_}")
                labels.add_label(Level.STUDY, study, "shared")
        except Exception as error:  # reported below, with the others
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert labels.labels_of(Level.STUDY, study) == sorted(["shared"] + [f"w{n}-{r}" for n in range(8) for r in range(5)])
