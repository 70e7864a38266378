"""Access control on every route, API tokens, the audit trail, /metrics."""

import io
import json
import re

import pydicom
import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from archive.roles import ADMIN, UPLOADER
from tests import servers
from tests.waiting import wait_for
from tests.cluster.conftest import c_store
from tests.dicomgen import make_instance, uid
from tests.api.dicomweb.support import BOUNDARY, multipart

OPEN = {"/healthz", "/readyz"}
# POSTs that only read: a viewer may make them.
READING_POSTS = re.compile(r"^/tools/(find|lookup|bulk-content|count-resources|create-archive|create-media"
                           r"|create-media-extended)$"
                           r"|^/(patients|studies|series)/[^/]+/(archive|media)$")


def _sample(pattern):
    """A concrete path for a URL pattern: the first alternative of a choice, "x" for a value."""
    text = str(pattern.pattern)
    if hasattr(pattern.pattern, "_route"):
        text = re.sub(r"<int:[^>]+>", "1", pattern.pattern._route)
        return re.sub(r"<[^>]+>", "x", text)
    text = re.sub(r"\(\?P<\w+>([^()]*)\)", lambda m: m.group(1).split("|")[0] if "|" in m.group(1) else "x", text)
    return text.lstrip("^").rstrip("$").replace("\\", "")


def every_path(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from every_path(entry, prefix + _sample(entry))
        elif isinstance(entry, URLPattern):
            yield "/" + prefix + _sample(entry)


def test_every_route_needs_credentials_except_the_probes(client, db):
    paths = sorted(set(every_path()))
    assert len(paths) > 60  # the walk found the project's routes, not a stub
    for path in paths:
        for method in ("GET", "POST", "PUT", "DELETE"):
            response = client.generic(method, path)
            if path in OPEN:
                assert response.status_code not in (401, 403), (method, path)
            elif path.endswith("login/"):
                assert response.status_code in (200, 302, 405), (method, path)  # the login form itself
            elif path.startswith(("/ui/", "/admin/", "/ohif/")) or path == "/":
                # Pages with their own login: a redirect to it, or a refusal.
                assert response.status_code in (301, 302, 401, 403, 404, 405), (method, path, response.status_code)
                if response.status_code in (301, 302):
                    # To the login form, or to an index page that sends there.
                    assert "login" in response["Location"] or response["Location"] in ("/admin/", "/ui/"), \
                        (method, path, response["Location"])
            else:
                assert response.status_code == 401, (method, path, response.status_code)


def test_a_viewer_cannot_write_anywhere(db, django_user_model, storage_dir):
    user = django_user_model.objects.create_user("reader", password="pw-reader")
    user.groups.add(Group.objects.get(name="viewer"))
    viewer = Client(HTTP_AUTHORIZATION=servers.auth_header("reader", "pw-reader"))
    for path in sorted(set(every_path())):
        if path in OPEN or path.startswith(("/ui/", "/admin/", "/ohif/")) or path == "/":
            continue
        for method in ("POST", "PUT", "DELETE"):
            if method == "POST" and READING_POSTS.match(path):
                continue
            response = viewer.generic(method, path, b"{}", content_type="application/json")
            assert response.status_code == 403, (method, path, response.status_code)
    for path in ("/audit", "/tokens"):  # administrators' reads
        assert viewer.get(path).status_code == 403
    # The console, signed in as the same viewer: its writes are refused by the roles its routes declare.
    session = Client()
    session.force_login(user)
    refused = 0
    for path in sorted(p for p in set(every_path()) if p.startswith("/ui/") and p != "/ui/logout/"):
        roles = resolve(path).func.roles
        response = session.post(path)
        if roles["POST"] in (UPLOADER, ADMIN):
            assert response.status_code == 403, path
            refused += 1
        elif roles["POST"] is None:
            assert response.status_code == 405, path
        if roles["GET"] == ADMIN:
            assert session.get(path).status_code == 403, path
    assert refused >= 15


def test_tokens_authenticate_scripts_until_revoked(server_factory):
    server = server_factory()
    created = servers.manage("token", "create", "admin", "nightly-export", env=server.env).stdout.strip()
    assert created.startswith("pacs_")
    bearer = {"Authorization": f"Bearer {created}"}
    assert servers.request(server.url + "/statistics", headers=bearer, auth=False)[0] == 200
    status, listed = servers.request_json(server.url + "/tokens")
    assert [(t["Name"], t["User"], t["Revoked"]) for t in listed] == [("nightly-export", "admin", None)]
    assert created not in json.dumps(listed)  # the secret is shown once, at creation
    prefix = listed[0]["Prefix"]
    assert servers.request(server.url + "/statistics", headers={"Authorization": f"Bearer {created}x"},
                           auth=False)[0] == 401
    status, made = servers.request_json(server.url + "/tokens", method="POST", body=b'{"Name": "viewer-app"}')
    assert status == 200 and made["Token"].startswith("pacs_")
    assert servers.request_json(server.url + f"/tokens/{prefix}", method="DELETE")[0] == 200
    status, _, body = servers.request(server.url + "/statistics", headers=bearer, auth=False)
    assert status == 401 and b"revoked" in body
    assert "revoked" in servers.manage("token", "list", env=server.env).stdout


def test_the_audit_trail_names_who_stored_read_deleted_and_configured(server_factory, listener_factory):
    server = server_factory()
    token = servers.manage("token", "create", "admin", "robot", env=server.env).stdout.strip()
    status, stored = servers.request_json(server.url + "/instances", method="POST", body=make_instance())
    assert status == 200
    listener = listener_factory(server)
    ds = pydicom.dcmread(io.BytesIO(make_instance(patient_id="AUDIT-AE", sop_uid="1.2.3.4.5.6.7")))
    assert c_store(listener.port, [ds], calling="CT_ROOM_2") == ["1.2.3.4.5.6.7"]
    assert servers.request(server.url + f"/instances/{stored['ID']}/file",
                           headers={"Authorization": f"Bearer {token}"}, auth=False)[0] == 200
    servers.request_json(server.url + "/modalities/ct2", method="PUT",
                         body=json.dumps({"AET": "CT2", "Host": "10.0.0.2", "Port": 104}).encode())
    assert servers.request_json(server.url + f"/studies/{stored['ParentStudy']}", method="DELETE")[0] == 200

    status, trail = servers.request_json(server.url + "/audit?limit=50")
    assert status == 200
    seen = {(e["Action"], e["ActorKind"], e["Actor"]) for e in trail}
    assert ("store", "user", "admin") in seen
    assert ("store", "ae", "CT_ROOM_2") in seen
    assert ("read", "token", next(e["Actor"] for e in trail if e["ActorKind"] == "token")) in seen
    assert any(e["Actor"].startswith("admin/robot") for e in trail if e["ActorKind"] == "token")
    assert ("configure", "user", "admin") in seen
    delete = next(e for e in trail if e["Action"] == "delete")
    assert (delete["Level"], delete["Resource"], delete["Status"]) == ("Study", stored["ParentStudy"], 200)
    # What was deleted, in words, read before it went.
    assert delete["Details"]["subject"] == {"PatientName": "DOE^JANE", "PatientID": "PACS-0001",
                                            "StudyDate": "20260115", "StudyDescription": "CT CHEST",
                                            "AccessionNumber": "ACC0001", "series": 1, "instances": 1}
    configure = next(e for e in trail if e["Action"] == "configure" and e["Path"] == "/modalities/ct2")
    assert configure["Details"]["name"] == "ct2" and configure["Details"]["created"]
    assert configure["Details"]["changed"]["aet"] == [None, "CT2"]
    # Reading an instance is reading its study.
    read = next(e for e in trail if e["Action"] == "read")
    assert (read["Level"], read["Resource"]) == ("Study", stored["ParentStudy"]) and read["Address"] == "127.0.0.1"
    assert read["Details"]["subject"]["PatientName"] == "DOE^JANE"
    status, filtered = servers.request_json(server.url + "/audit?action=store&kind=ae")
    assert [e["Actor"] for e in filtered] == ["CT_ROOM_2"]
    assert servers.request_json(server.url + "/audit?bogus=1")[0] == 400
    # Nobody edits the trail through the API.
    for method in ("PUT", "DELETE", "POST"):
        assert servers.request(server.url + "/audit", method=method, body=b"[]")[0] == 405


def test_metrics_count_the_clusters_work(server_factory):
    server = server_factory()
    assert servers.request(server.url + "/metrics", auth=False)[0] == 401
    servers.request_json(server.url + "/instances", method="POST", body=make_instance())
    servers.request_json(server.url + "/instances", method="POST", body=b"not dicom")
    stow = servers.request(server.url + "/dicom-web/studies", method="POST", body=multipart([b"\0" * 300]),
                           headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'})
    assert stow[0] == 409  # its one part refused
    servers.request_json(server.url + "/tools/find", method="POST", body=b'{"Level": "Study", "Query": {}}')
    # Each process sends its counts once a second (cluster/metrics.py): the totals lag by that.
    counted = ('pacs_instances_stored_total{origin="RestApi"} 1',
               'pacs_instances_rejected_total{origin="RestApi"} 2',  # the POST's and the STOW part's
               'pacs_queries_total{level="Study"} 1')
    wait_for(lambda: all(line in servers.request(server.url + "/metrics")[2].decode() for line in counted),
             timeout=10, what="the counts in /metrics")
    status, headers, body = servers.request(server.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert all(line in text for line in counted)
    assert "pacs_instances 1" in text and "pacs_deletion_outbox 0" in text
    assert "# TYPE pacs_queue_depth gauge" in text


@pytest.mark.parametrize("public", ["true"])
def test_metrics_can_be_opened_to_a_trusted_prometheus(server_factory, public):
    server = server_factory(PACS_METRICS_PUBLIC=public)
    assert servers.request(server.url + "/metrics", auth=False)[0] == 200
    assert servers.request(server.url + "/statistics", auth=False)[0] == 401


def test_repeated_failed_logins_lock_the_user_name_on_every_node(server_factory):
    first = server_factory("node-a", PACS_LOGIN_FAILURES=3)
    second = server_factory("node-b", join=first, PACS_LOGIN_FAILURES=3)
    wrong = servers.auth_header("admin", "guess")
    for node in (first, second, first):  # failures add up across nodes
        assert servers.request(node.url + "/statistics", auth=wrong)[0] == 401
    status, headers, _ = servers.request(second.url + "/statistics", auth=servers.auth_header())
    assert status == 429 and int(headers["Retry-After"]) > 0  # even the right password, from this client
    servers.manage("shell", "-c", "from django.contrib.auth.models import User; "
                   "User.objects.create_user('other', password='other-pw').groups.add("
                   "__import__('django.contrib.auth.models', fromlist=['Group']).Group.objects.get(name='viewer'))",
                   env=first.env)
    assert servers.request(first.url + "/statistics", auth=servers.auth_header("other", "other-pw"))[0] == 200
    # The administrator logging in from another client (behind the trusted proxy on
    # loopback, which names it in X-Forwarded-For) is not locked out by the attacker.
    elsewhere = {"X-Forwarded-For": "10.1.2.3"}
    assert servers.request(second.url + "/statistics", headers=elsewhere)[0] == 200


def test_failures_under_many_names_lock_the_attacking_client_only(server_factory):
    server = server_factory(PACS_LOGIN_FAILURES=2)
    attacker = {"X-Forwarded-For": "198.51.100.66"}
    for n in range(12):  # past LOGIN_FAILURES x 5 names' worth of failures
        status = servers.request(server.url + "/statistics", headers=attacker,
                                 auth=servers.auth_header(f"user{n}", "guess"))[0]
        assert status in (401, 429)
    assert servers.request(server.url + "/statistics", headers=attacker)[0] == 429
    # Everyone else, the administrator included, still logs in; so does the attacker's
    # target from its own desk.
    assert servers.request(server.url + "/statistics", headers={"X-Forwarded-For": "203.0.113.9"})[0] == 200
    assert servers.request(server.url + "/statistics")[0] == 200
    # A client that is not a trusted proxy cannot choose its address: the header is ignored.
    from pacsweb.clients import real_client
    assert real_client("198.51.100.66", "10.0.0.1", "127.0.0.1,::1") == "198.51.100.66"
    assert real_client("127.0.0.1", "10.0.0.1, 10.9.9.9", "127.0.0.1,::1") == "10.9.9.9"
    assert real_client("10.0.0.5", "1.2.3.4, 10.0.0.4", "127.0.0.1,10.0.0.0/8") == "1.2.3.4"


def test_a_deactivated_user_is_refused_at_once_on_every_node(server_factory):
    first = server_factory("node-a")
    second = server_factory("node-b", join=first)
    servers.manage("shell", "-c", "from django.contrib.auth.models import User, Group; "
                   "User.objects.create_user('leaver', password='leaver-pw').groups.add(Group.objects.get(name='uploader'))",
                   env=first.env)
    leaver = servers.auth_header("leaver", "leaver-pw")

    def store(node, n):
        return servers.request(node.url + "/instances", method="POST", auth=leaver,
                               body=make_instance(sop_uid=uid("leaver", n)))[0]

    for n, node in enumerate((first, second)):  # each remembers the credentials it checked
        assert servers.request(node.url + "/statistics", auth=leaver)[0] == 200
        assert store(node, n) == 200 and store(node, n + 10) == 200  # the second on remembered credentials
    first.sql_execute("UPDATE auth_user SET is_active = false WHERE username = 'leaver'")
    for n, node in enumerate((first, second)):
        assert servers.request(node.url + "/statistics", auth=leaver)[0] == 401
        assert store(node, n + 20) == 401
    assert servers.request_json(first.url + "/statistics")[1]["CountInstances"] == 4


def test_security_headers_and_https_cookies(server_factory):
    server = server_factory(PACS_HTTPS="true")
    status, headers, _ = servers.request(server.url + "/statistics")
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers, _ = servers.request(server.url + "/admin/login/", auth=False,
                                         headers={"X-Forwarded-Proto": "https"})
    assert status == 200
    assert "secure" in headers.get("Set-Cookie", "").lower()
    assert "max-age=31536000" in headers.get("Strict-Transport-Security", "")
