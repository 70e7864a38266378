"""HTTP as Orthanc speaks it on API routes: paths with empty segments or a trailing
slash, and every error (Django's own 404, 405, 500 too) as Orthanc's JSON."""

from django.test import Client

from tests import servers
from tests.dicomgen import make_instance
from tests.storing import store_instance

ORTHANC_ERROR_KEYS = {"HttpError", "HttpStatus", "Message", "Method", "OrthancError", "OrthancStatus", "Uri", "Details"}


def test_empty_segments_and_trailing_slash_reach_the_same_route(api):
    patient_id = store_instance(api, make_instance(patient_id="SLASH"))["ParentPatient"]
    for path in ("/patients", "//patients", "/patients/", "//patients//", f"/patients//{patient_id}/"):
        response = get_raw_path(api, path)
        assert response.status_code == 200, path
        assert patient_id in str(response.json())
    assert get_raw_path(api, f"//patients/{patient_id}//studies/").json()[0]["ParentPatient"] == patient_id


def get_raw_path(api, path):
    # The test client would read a leading "//" as the start of a host name.
    return api.get("/", PATH_INFO=path)


def test_unknown_route_is_orthanc_404_json(api):
    response = api.get("/no/such/route")
    assert response.status_code == 404
    body = response.json()
    assert set(body) == ORTHANC_ERROR_KEYS
    assert body["HttpStatus"] == 404 and body["OrthancStatus"] == 17 and body["Message"] == "Unknown resource"
    assert body["Uri"] == "/no/such/route" and body["Method"] == "GET"


def test_method_not_allowed_is_orthanc_json_with_allow(api):
    response = api.delete("/system")
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    body = response.json()
    assert set(body) == ORTHANC_ERROR_KEYS and body["HttpStatus"] == 405 and body["Method"] == "DELETE"


def test_unexpected_exception_is_orthanc_500_json(admin_user, storage_dir, monkeypatch):
    from api.rest import system

    monkeypatch.setattr(system, "Patient", None)
    client = Client(HTTP_AUTHORIZATION=servers.auth_header(), raise_request_exception=False)
    response = client.get("/statistics")
    assert response.status_code == 500
    body = response.json()
    assert set(body) == ORTHANC_ERROR_KEYS and body["OrthancStatus"] == -1 and body["Message"] == "Internal error"


def test_request_django_refuses_before_a_view_is_orthanc_400_json(api, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 2
    form = api.post("/instances", {"a": "1", "b": "2", "c": "3"})
    assert form.status_code == 400
    assert set(form.json()) == ORTHANC_ERROR_KEYS


def test_missing_credentials_are_orthanc_401_json(db):
    response = Client().get("/patients")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic")
    assert set(response.json()) == ORTHANC_ERROR_KEYS


def test_console_keeps_its_own_pages(admin_user, storage_dir):
    browser = Client()
    browser.force_login(admin_user)
    for path in ("/ui/no-such-page", "/ui/no-such-page/", "/admin/no-such-page"):
        response = browser.get(path)
        assert response.status_code == 404, path
        assert not response["Content-Type"].startswith("application/json"), path
