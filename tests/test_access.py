"""REST authentication by HTTP Basic, and roles."""

import re

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from tests import servers
from tests.dicomgen import make_instance


@pytest.fixture
def user_with_role(db, django_user_model, storage_dir):
    def make(role):
        user = django_user_model.objects.create_user(role + "-user", password="pw-" + role)
        user.groups.add(Group.objects.get(name=role))
        return Client(HTTP_AUTHORIZATION=servers.auth_header(user.username, "pw-" + role))

    return make


def test_rest_without_credentials_is_401_with_basic_challenge(client, db):
    for path in ("/system", "/statistics", "/instances/x/file"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response["WWW-Authenticate"].startswith("Basic")
    assert client.post("/instances", b"x", content_type="application/dicom").status_code == 401


def test_wrong_password_is_401(client, admin_user):
    response = client.get("/system", HTTP_AUTHORIZATION=servers.auth_header("admin", "wrong"))
    assert response.status_code == 401


def test_probes_are_open(client, db):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)


def test_viewer_reads_but_cannot_store(user_with_role):
    viewer = user_with_role("viewer")
    assert viewer.get("/statistics").status_code == 200
    response = viewer.generic("POST", "/instances", make_instance(), content_type="application/dicom")
    assert response.status_code == 403
    assert viewer.get("/statistics").json()["CountInstances"] == 0


def test_uploader_stores(user_with_role):
    uploader = user_with_role("uploader")
    response = uploader.generic("POST", "/instances", make_instance(), content_type="application/dicom")
    assert response.status_code == 200


def test_readyz_names_what_is_unreachable(client, db, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "redis" in response.json()["problems"]


def test_remembered_credentials_follow_roles_and_password_at_once(user_with_role, django_user_model):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    uploader = user_with_role("uploader")
    user = django_user_model.objects.get(username="uploader-user")
    store = lambda n: uploader.generic("POST", "/instances", make_instance(sop_uid=f"1.2.3.{n}"),  # noqa: E731
                                      content_type="application/dicom").status_code
    assert store(1) == 200  # the password checked once, then remembered
    with CaptureQueriesContext(connection) as queries:
        assert store(2) == 200
    assert len([q for q in queries if "auth_" in q["sql"]]) == 1  # the user and its groups: one query
    user.groups.set([Group.objects.get(name="viewer")])
    assert store(3) == 403
    assert uploader.get("/statistics").status_code == 200
    user.set_password("another")
    user.save()
    assert uploader.get("/statistics").status_code == 401
    user.set_password("pw-uploader")
    user.is_active = False
    user.save()
    assert uploader.get("/statistics").status_code == 401


def test_a_read_or_a_search_checks_remembered_credentials_in_its_own_query(
        user_with_role, django_user_model, admin_user, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    admin = Client(HTTP_AUTHORIZATION=servers.auth_header())
    stored = admin.generic("POST", "/instances", make_instance(sop_uid="1.2.3.77"),
                           content_type="application/dicom").json()
    viewer = user_with_role("viewer")
    user = django_user_model.objects.get(username="viewer-user")
    settings.LOGIN_FAILURES = 100  # each 401 below is a failed login
    study_uid = admin.get(f"/studies/{stored['ParentStudy']}").json()["MainDicomTags"]["StudyInstanceUID"]
    series_uid = admin.get(f"/series/{stored['ParentSeries']}").json()["MainDicomTags"]["SeriesInstanceUID"]
    paths = (f"/studies/{stored['ParentStudy']}", f"/instances/{stored['ID']}", f"/instances/{stored['ID']}/file",
             f"/instances/{stored['ID']}/tags?simplify", f"/instances/{stored['ID']}/content/0010-0010",
             "/dicom-web/studies", f"/dicom-web/studies/{study_uid}/series", "/dicom-web/instances?limit=1",
             f"/dicom-web/studies/{study_uid}/metadata", f"/dicom-web/studies/{study_uid}",
             f"/wado?requestType=WADO&studyUID={study_uid}&seriesUID={series_uid}&objectUID=1.2.3.77")
    assert viewer.get("/system").status_code == 200  # the password checked once, then remembered
    for path in paths:
        with CaptureQueriesContext(connection) as queries:
            assert viewer.get(path).status_code == 200, path
        # The lookup reads the account's row too; no query of its own does.
        checks = [q["sql"] for q in queries if "auth_user" in q["sql"]]
        assert len(checks) == 1 and re.search(r'FROM "?(study|series|instance|attachment)"? ', checks[0]), path
    # And a change takes effect at once, as on every other route.
    user.is_active = False
    user.save()
    for path in paths:
        response = viewer.get(path)
        assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Basic"), path
    assert viewer.get("/studies/unknown").status_code == 401  # no 404 for an account that is gone
    assert viewer.get("/dicom-web/studies?PatientID=nobody").status_code == 401  # nor an empty answer
    user.is_active = True
    user.save()
    assert {viewer.get(path).status_code for path in paths} == {200}
    assert viewer.get("/studies/unknown").status_code == 404
    user.groups.clear()
    assert {viewer.get(path).status_code for path in paths} == {403}
    user.groups.add(Group.objects.get(name="viewer"))
    user.set_password("another")
    user.save()
    assert {viewer.get(path).status_code for path in paths} == {401}


def test_a_script_request_skips_the_browser_machinery_and_a_browser_keeps_it(client, admin_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    basic = servers.auth_header()
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/system", HTTP_AUTHORIZATION=basic)
    assert response.status_code == 200
    assert not hasattr(response.wsgi_request, "session") and not hasattr(response.wsgi_request, "_messages")
    assert "Cookie" not in response.get("Vary", "") and not response.cookies
    assert not [q for q in queries if "django_session" in q["sql"]]
    # The same credentials on the console's pages: the session machinery is there.
    response = client.get("/admin/login/", HTTP_AUTHORIZATION=basic)
    assert hasattr(response.wsgi_request, "session") and "csrftoken" in response.cookies
    # A browser signed in to the console reads the API with its session.
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    response = browser.get("/system")
    assert response.status_code == 200 and response.wsgi_request.session.session_key
    refused = browser.post("/tools/find", b"{}", content_type="application/json")
    assert refused.status_code == 403 and b"CSRF" in refused.content  # its writes still need the token


def test_the_web_handler_resolves_a_route_once(admin_user):
    """The access middleware resolves the route (its role); the handler reuses the match."""
    from unittest import mock

    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections
    from django.test import RequestFactory
    from django.urls import resolve as django_resolve
    from django.urls.resolvers import URLResolver

    from pacsweb.handler import Handler

    environ = RequestFactory()._base_environ(PATH_INFO="/system", REQUEST_METHOD="GET",
                                             HTTP_AUTHORIZATION=servers.auth_header())
    started = []
    resolve = URLResolver.resolve
    # As Django's test client does: the test's transaction outlives the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        with mock.patch.object(URLResolver, "resolve", autospec=True, side_effect=resolve) as resolving:
            django_resolve("/system")
            once = resolving.call_count  # the root resolver and the included ones it descends into
            resolving.reset_mock()
            body = b"".join(Handler()(environ, lambda status, headers, *_: started.append(status)))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert started == ["200 OK"] and b"ApiVersion" in body
    assert resolving.call_count == once


def test_a_store_on_remembered_credentials_is_refused_once_they_no_longer_hold(user_with_role, django_user_model,
                                                                              admin_user, storage_dir):
    from tests.api.dicomweb.support import BOUNDARY, multipart

    uploader = user_with_role("uploader")
    user = django_user_model.objects.get(username="uploader-user")
    admin = Client(HTTP_AUTHORIZATION=servers.auth_header())

    def store(n, path="/instances"):
        if path == "/instances":
            return uploader.generic("POST", path, make_instance(sop_uid=f"1.2.3.{n}"),
                                    content_type="application/dicom")
        return uploader.generic("POST", path, multipart([make_instance(sop_uid=f"1.2.3.{n}.{k}") for k in (1, 2)]),
                                content_type=f'multipart/related; type="application/dicom"; boundary={BOUNDARY}')

    def files():
        return sorted(p for p in storage_dir.rglob("*") if p.is_file() and p.parent.name != "tmp")

    assert store(1).status_code == 200 and store(2, "/dicom-web/studies").status_code == 200
    kept = files()
    user.is_active = False
    user.save()
    for path in ("/instances", "/dicom-web/studies"):
        response = store(3, path)
        assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Basic"), path
    # A disabled account's body that stores nothing (not DICOM) is refused alike, not answered 400.
    assert uploader.generic("POST", "/instances", b"not dicom", content_type="application/dicom").status_code == 401
    assert admin.get("/statistics").json()["CountInstances"] == 3 and files() == kept

    user.is_active = True
    user.save()
    assert store(4).status_code == 200
    user.groups.set([Group.objects.get(name="viewer")])
    response = store(5)
    assert response.status_code == 403 and "uploader" in response.json()["Details"]
    user.groups.add(Group.objects.get(name="uploader"))  # a role granted is taken at once too
    assert store(6).status_code == 200
    assert admin.get("/statistics").json()["CountInstances"] == 5


@pytest.mark.django_db(transaction=True)
def test_a_script_store_is_one_statement_on_postgresql(django_user_model, storage_dir):
    """The credentials, the rows, the audit row: one statement, a transaction by itself."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert connection.vendor == "postgresql"
    user = django_user_model.objects.create_user("one-statement", password="pw")
    user.groups.add(Group.objects.get_or_create(name="uploader")[0])
    script = Client(HTTP_AUTHORIZATION=servers.auth_header("one-statement", "pw"))
    store = lambda n: script.generic("POST", "/instances", make_instance(sop_uid=f"1.2.3.{n}"),  # noqa: E731
                                     content_type="application/dicom").status_code
    assert store(1) == 200  # the password checked once, then remembered
    for n in (2, 3):
        with CaptureQueriesContext(connection) as queries:
            assert store(n) == 200
        assert [q["sql"].split()[0] for q in queries] == ["WITH"], [q["sql"][:60] for q in queries]


def test_a_signed_in_browsers_user_and_groups_are_one_query_per_request(client, django_user_model, admin_user):
    """The viewer's session (OHIF's requests): its row, then the user with its groups."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    admin = Client(HTTP_AUTHORIZATION=servers.auth_header())
    stored = admin.generic("POST", "/instances", make_instance(sop_uid="1.2.3.78"),
                           content_type="application/dicom").json()
    uid = admin.get(f"/studies/{stored['ParentStudy']}").json()["MainDicomTags"]["StudyInstanceUID"]
    user = django_user_model.objects.create_user("radiologist", password="pw-radiologist")
    user.groups.add(Group.objects.get(name="viewer"))
    client.force_login(user)
    for path in (f"/dicom-web/studies?StudyInstanceUID={uid}", f"/dicom-web/studies/{uid}/metadata"):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(path).status_code == 200, path
        accounts = [q["sql"] for q in queries if "auth_" in q["sql"]]
        assert len(accounts) == 1 and "auth_group" in accounts[0], accounts
    assert client.post("/instances", make_instance(sop_uid="1.2.3.79"),
                       content_type="application/dicom").status_code == 403  # a viewer's role, read with it
    # Disabled, the account's session reads nothing more, at its next request.
    user.is_active = False
    user.save()
    assert client.get(f"/dicom-web/studies/{uid}/metadata").status_code == 401
