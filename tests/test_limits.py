"""Every input has a bound, refused with a clear 4xx before it costs memory or time."""

import json

import pytest

from tests.dicomgen import make_instance


def details(response):
    return json.loads(response.content)["Details"]


@pytest.mark.parametrize("method, path", [
    ("POST", "/tools/find"), ("POST", "/modalities/x/store"), ("PUT", "/modalities/x"),
    ("POST", "/tools/create-archive"),
])
def test_a_json_body_over_its_bound_is_refused_from_its_length(api, settings, method, path):
    settings.MAX_REQUEST_BYTES = 1024
    # The length alone decides: the body is never read (a 600 MB one took a worker to 6.7 GB).
    response = api.generic(method, path, b"{}", content_type="application/json", CONTENT_LENGTH=str(2**20))
    assert response.status_code == 413
    assert "PACS_MAX_REQUEST_KB" in details(response)


def test_a_5_gb_upload_is_refused_up_front_everywhere(api):
    for path in ("/instances", "/dicom-web/studies", "/tools/find", "/studies/x/attachments/report"):
        response = api.generic("POST" if "attachments" not in path else "PUT", path, b"x",
                               content_type="application/dicom", CONTENT_LENGTH=str(5 * 2**30))
        assert response.status_code == 413, path
        assert "PACS_MAX_" in details(response)


def test_bodies_within_their_route_class_are_served(api, settings):
    settings.MAX_REQUEST_BYTES = 1024
    # An upload is bounded by PACS_MAX_UPLOAD_MB, not by the JSON bound.
    response = api.generic("POST", "/instances", make_instance(), content_type="application/dicom")
    assert response.status_code == 200, response.content[:300]
    response = api.post("/tools/find", {"Level": "Patient", "Query": {}}, content_type="application/json")
    assert response.status_code == 200 and len(response.json()) == 1


def test_a_content_length_that_is_not_a_number_is_a_bad_request(api):
    response = api.generic("POST", "/tools/find", b"{}", content_type="application/json", CONTENT_LENGTH="lots")
    assert response.status_code == 400


def test_searches_are_bounded_by_default_and_at_most(api, settings):
    settings.FIND_DEFAULT_LIMIT, settings.FIND_MAX_LIMIT = 2, 3
    for n in range(4):
        assert api.generic("POST", "/instances", make_instance(patient_id=f"LIMIT{n}"),
                           content_type="application/dicom").status_code == 200
    find = lambda body: api.post("/tools/find", body, content_type="application/json").json()  # noqa: E731
    assert len(find({"Level": "Patient", "Query": {}})) == 2
    assert len(find({"Level": "Patient", "Query": {}, "Limit": 100})) == 3
    assert len(find({"Level": "Patient", "Query": {}, "Limit": 1})) == 1
    qido = api.get("/dicom-web/studies", HTTP_ACCEPT="application/dicom+json")
    assert len(qido.json()) == 2 and "additional results" in qido["Warning"]
    qido = api.get("/dicom-web/studies?limit=1000", HTTP_ACCEPT="application/dicom+json")
    assert len(qido.json()) == 3


def test_hostile_wildcards_and_huge_uid_lists_are_clear_400s(api):
    response = api.post("/tools/find", {"Level": "Patient", "Query": {"PatientName": "*a" * 40}},
                        content_type="application/json")
    assert response.status_code == 400 and "PACS_QUERY_MAX_WILDCARDS" in details(response)
    uids = "\\".join(f"1.2.3.{n}" for n in range(300_000))
    response = api.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": uids}},
                        content_type="application/json")
    assert response.status_code == 400 and "PACS_QUERY_MAX_LIST" in details(response)
    response = api.get("/dicom-web/studies", {"StudyInstanceUID": ",".join(f"1.2.3.{n}" for n in range(20_000))},
                       HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 400 and "PACS_QUERY_MAX_LIST" in details(response)
