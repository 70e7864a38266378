"""The console's views in process (Django's test client): roles on every route,
sign-in, the upload endpoint, sorted and paged searches, pages and their empty
states, forms. The browser tests (test_console.py) cover the same pages end to end."""

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from archive.models import Modality, Peer, Study
from cluster.models import Job, JobState
from console import search
from console.urls import route_roles
from archive.roles import ADMIN, OPEN, UPLOADER, VIEWER
from tests import servers
from tests.console.phantom import ct_series
from tests.dicomgen import make_instance

PUBLIC_ROUTES = {"login/", "logout/"}


def store(client, data, name="file.dcm"):
    response = client.post("/ui/upload/file", data=data, content_type="application/octet-stream",
                           HTTP_X_FILE_NAME=name)
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_every_console_route_declares_the_roles_it_needs():
    table = route_roles()
    for pattern, roles in table.items():
        if pattern in PUBLIC_ROUTES:
            assert OPEN in roles.values()
            continue
        assert roles is not None, f"/ui/{pattern} is not wrapped by console_view()"
        assert OPEN not in roles.values()
        assert set(roles) == {"GET", "POST"}
        assert roles["GET"] in (VIEWER, UPLOADER, ADMIN, None)
        assert roles["POST"] in (VIEWER, UPLOADER, ADMIN, None)
    # What writes needs which role: the explicit table of the console.
    posts = {pattern: roles["POST"] for pattern, roles in table.items() if roles and roles["POST"]}
    assert posts["studies/<str:public_id>/delete"] == ADMIN
    assert posts["studies/<str:public_id>/send"] == ADMIN
    assert posts["studies/<str:public_id>/prepare"] == VIEWER
    assert posts["upload/"] == UPLOADER and posts["upload/file"] == UPLOADER
    assert posts["jobs/<str:job_id>/<str:action>"] == ADMIN
    assert posts["cluster/<str:node>/<str:action>"] == ADMIN
    for pattern in ("modalities/new", "modalities/<str:name>/echo", "peers/<str:name>/test", "peers/new",
                    "tokens/", "tokens/<str:prefix>/revoke"):
        assert posts[pattern] == ADMIN
    assert table["audit/"]["GET"] == ADMIN and table["tokens/"]["GET"] == ADMIN


def test_signed_out_requests_are_sent_to_sign_in(client, db):
    for path in ("/ui/", "/ui/studies/", "/ui/studies/x/", "/ui/jobs/", "/ui/cluster/", "/ui/upload/",
                 "/ui/modalities/", "/ui/changes/", "/ui/nowhere"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/ui/login/?next="), path
    response = client.post("/ui/upload/file", data=b"x", content_type="application/octet-stream")
    assert response.status_code in (401, 403)  # 403 when the CSRF check comes first
    response = client.get("/ui/jobs/x/progress", HTTP_HX_REQUEST="true")
    assert response.status_code == 401 and response["HX-Redirect"].startswith("/ui/login/")
    assert client.get("/").headers["Location"] == "/ui/"


def test_sign_in_page_and_wrong_password(client, admin_user):
    assert b"Sign in" in client.get("/ui/login/").content
    response = client.post("/ui/login/", {"username": "admin", "password": "nope"})
    assert response.status_code == 200 and b"do not match" in response.content
    response = client.post("/ui/login/", {"username": "admin", "password": "test-admin-password",
                                          "next": "/ui/jobs/"})
    assert response.status_code == 302 and response["Location"] == "/ui/jobs/"
    response = client.post("/ui/login/", {"username": "admin", "password": "test-admin-password",
                                          "next": "https://evil.example/"})
    assert response["Location"] == "/ui/"  # never sent elsewhere
    assert client.get("/ui/logout/").status_code == 405  # signing out is a POST (a link cannot do it)
    assert client.post("/ui/logout/").status_code == 302
    assert client.get("/ui/").status_code == 302


def test_roles_decide_what_each_user_may_do(as_role):
    nobody, viewer, uploader = as_role(None), as_role("viewer"), as_role("uploader")
    response = nobody.get("/ui/")
    assert response.status_code == 403 and b"no role" in response.content
    assert viewer.get("/ui/").status_code == 200
    for path in ("/ui/studies/x/delete", "/ui/studies/x/send", "/ui/jobs/x/cancel", "/ui/cluster/n/drain",
                 "/ui/modalities/new", "/ui/modalities/m/delete", "/ui/modalities/m/echo", "/ui/peers/new",
                 "/ui/peers/p/test", "/ui/upload/"):
        assert viewer.post(path).status_code == 403, path
        if path != "/ui/upload/":
            assert uploader.post(path).status_code == 403, path
    response = viewer.post("/ui/upload/file", data=make_instance(), content_type="application/octet-stream")
    assert response.status_code == 403 and "uploader role" in response.json()["error"]
    assert viewer.get("/ui/modalities/new").status_code == 403
    for path in ("/ui/audit/", "/ui/tokens/"):
        assert viewer.get(path).status_code == 403 and uploader.get(path).status_code == 403, path
        assert b"Audit</a>" not in viewer.get("/ui/").content
    assert viewer.post("/ui/tokens/", {"name": "mine"}).status_code == 403
    assert viewer.post("/ui/nowhere").status_code == 404
    assert viewer.get("/ui/upload/").status_code == 403
    # Allowed for a viewer: preparing an archive (here of a study that does not exist).
    assert viewer.post("/ui/studies/x/prepare").status_code == 404
    assert uploader.get("/ui/upload/").status_code == 200
    assert store(uploader, make_instance())[0]["status"] == "Stored"
    assert Study.objects.count() == 1
    study = Study.objects.get().public_id
    assert uploader.post(f"/ui/studies/{study}/delete").status_code == 403
    assert Study.objects.count() == 1
    # Methods a route does not answer.
    assert viewer.put("/ui/studies/").status_code == 405
    assert viewer.get("/ui/jobs/x/cancel").status_code == 405


def test_upload_endpoint_reports_each_file(admin):
    good = ct_series("ep", 2)
    assert store(admin, good[0], "a.dcm") == [{"name": "a.dcm", "member": "", "status": "Stored", "detail": "",
                                              "study": Study.objects.get().public_id,
                                              "study_label": "DOE, JANE · 2026-01-15 CT CHEST"}]
    assert store(admin, good[0], "a.dcm")[0]["status"] == "Already stored"
    (rejected,) = store(admin, b"hello", "notes.txt")
    assert rejected["status"] == "Rejected" and "not a DICOM Part 10 file" in rejected["detail"]
    assert store(admin, b"", "empty.dcm")[0]["detail"] == "the file is empty"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x/one.dcm", good[1])
        archive.writestr("x/cut.dcm", good[1][:200])
    results = store(admin, buffer.getvalue(), "batch.zip")
    assert [r["status"] for r in results] == ["Stored", "Rejected"]
    assert [r["name"] for r in results] == ["batch.zip › x/one.dcm", "batch.zip › x/cut.dcm"]
    assert [r["member"] for r in results] == ["x/one.dcm", "x/cut.dcm"]
    assert store(admin, b"PK\x03\x04 broken", "bad.zip")[0]["status"] == "Rejected"
    # Names travel URL-encoded in a header.
    assert store(admin, good[1], "%C3%A9t%C3%A9.dcm")[0]["name"] == "été.dcm"


def test_upload_form_without_javascript(admin):
    good = ct_series("form", 1)[0]
    response = admin.post("/ui/upload/", {"files": [SimpleUploadedFile("good.dcm", good),
                                                    SimpleUploadedFile("bad.dcm", b"nope")]})
    assert response.status_code == 200
    summary = response.context["summary"]
    assert (summary["stored"], summary["already"], summary["rejected"]) == (1, 0, 1)
    assert b"1 stored" in response.content and b"1 rejected" in response.content


def _studies(client, specs):
    for tag, name, date, description, modality in specs:
        for data in ct_series(tag, 1, patient_name=name, study_date=date, study_description=description,
                              modality=modality):
            assert store(client, data)[0]["status"] == "Stored"


SPECS = [("s1", "DOE^JANE", "20250101", "CT CHEST", "CT"), ("s2", "ÉCLAIR^ÉMILE", "20250305", "MR KNEE", "MR"),
         ("s3", "ADAMS^ANN", "20240620", "CT HEAD", "CT"), ("s4", "DOE^JOHN", "20250210", "PET BODY", "PT"),
         ("s5", "ZED^ZOE", "20230101", "CT CHEST LOW DOSE", "CT")]


def test_study_search_sorts_and_pages_in_the_database(admin, django_assert_max_num_queries):
    _studies(admin, SPECS)
    with django_assert_max_num_queries(3):  # count, the page, the modalities of the page
        page = search.studies({}, sort="patient", page=1, size=2)
    names = [m.values["PatientName"] for m in page.matches]
    assert names == ["ADAMS^ANN", "DOE^JANE"] and page.total == 5 and page.pages == 3
    page = search.studies({}, sort="patient", page=3, size=2)
    assert [m.values["PatientName"] for m in page.matches] == ["ZED^ZOE"]
    page = search.studies({}, sort="-date", page=1, size=10)
    assert [m.values["StudyDate"] for m in page.matches] == ["20250305", "20250210", "20250101", "20240620",
                                                              "20230101"]
    page = search.studies({}, sort="unknown", page=99, size=10)  # falls back to the default, last page
    assert page.number == 1 and len(page.matches) == 5


@pytest.mark.parametrize("query, expected", [
    ("patient_name=doe", {"DOE^JANE", "DOE^JOHN"}),
    ("patient_name=eclair", {"ÉCLAIR^ÉMILE"}),  # accents and case do not matter
    ("patient_name=*O?N", {"DOE^JOHN"}),
    ("patient_id=P-s3", {"ADAMS^ANN"}),
    ("date_from=2025-01-01&date_to=2025-02-28", {"DOE^JANE", "DOE^JOHN"}),
    ("date_from=2025-03-01", {"ÉCLAIR^ÉMILE"}),
    ("modality=CT", {"DOE^JANE", "ADAMS^ANN", "ZED^ZOE"}),
    ("description=CHEST", {"DOE^JANE", "ZED^ZOE"}),
    ("patient_name=nobody", set()),
])
def test_study_search_form_uses_the_query_engine(admin, query, expected):
    _studies(admin, SPECS)
    response = admin.get("/ui/studies/?" + query)
    assert response.status_code == 200
    page = response.context["page"]
    assert {m.values["PatientName"] for m in page.matches} == expected
    if not expected:
        assert b"No study matches this search" in response.content


def test_study_search_refuses_an_inverted_date_range(admin):
    response = admin.get("/ui/studies/?date_from=2025-02-01&date_to=2025-01-01")
    assert response.status_code == 200 and b"after the last one" in response.content


def test_pages_render_their_empty_states(admin):
    expectations = {
        "/ui/": b"The archive is empty", "/ui/studies/": b"holds no study yet", "/ui/patients/": b"no patient yet",
        "/ui/jobs/": b"No job yet", "/ui/modalities/": b"No modality yet", "/ui/peers/": b"No peer yet",
        "/ui/changes/": b"Nothing has changed yet", "/ui/cluster/": b"No node has reported yet",
        "/ui/upload/": b"Drop DICOM files", "/ui/tokens/": b"No token yet",
    }
    for path, text in expectations.items():
        response = admin.get(path)
        assert response.status_code == 200, path
        assert text in response.content, path
    response = admin.get("/ui/studies/nope/")
    assert response.status_code == 404 and b"not in the archive" in response.content
    response = admin.get("/ui/nowhere")
    assert response.status_code == 404 and b"There is no page at this address" in response.content
    assert admin.get("/ui/studies").headers["Location"] == "/ui/studies/"


def test_study_patient_and_delete_pages(admin):
    _studies(admin, SPECS[:1])
    study = Study.objects.get()
    response = admin.get(f"/ui/studies/{study.public_id}/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "DOE, JANE" in content and "CT CHEST" in content and "/rendered?width=160" in content
    assert f'href="/studies/{study.public_id}/archive"' in content
    response = admin.get(f"/ui/patients/{study.patient.public_id}/")
    assert response.status_code == 200 and f"/ui/studies/{study.public_id}/" in response.content.decode()
    series = study.series.get().public_id
    assert admin.get(f"/ui/open/any/{series}")["Location"] == f"/ui/studies/{study.public_id}/?series={series}#viewer"
    assert admin.get(f"/ui/open/patient/{study.patient.public_id}")["Location"] == \
        f"/ui/patients/{study.patient.public_id}/"
    assert admin.get("/ui/open/galaxy/x").status_code == 404
    response = admin.get(f"/ui/studies/{study.public_id}/delete")
    assert b"1 instance in 1 series" in response.content and b"2025-01-01" in response.content
    response = admin.post(f"/ui/studies/{study.public_id}/delete")
    assert response.status_code == 302 and Study.objects.count() == 0
    assert admin.get(f"/ui/studies/{study.public_id}/").status_code == 404
    response = admin.get(f"/ui/open/study/{study.public_id}")
    assert response.status_code == 404


def test_job_progress_fragment_and_actions(admin):
    job = Job.objects.create(id="job-1", type="Archive", state=JobState.SUCCESS, progress=100,
                             params={"resources": ["x"]}, content={"InstancesCount": 3}, output="job-1.zip",
                             output_size=2048, created_at=timezone.now(), completed_at=timezone.now())
    response = admin.get("/ui/jobs/job-1/progress", HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert 'href="/jobs/job-1/archive"' in content and "hx-trigger" not in content  # done: no more polling
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING, progress=40)
    content = admin.get("/ui/jobs/job-1/progress").content.decode()
    assert 'hx-trigger="every 1s"' in content and 'aria-valuenow="40"' in content
    response = admin.post("/ui/jobs/job-1/resubmit", {"next": "/ui/jobs/?state=Running"}, follow=True)
    assert b"only a failed or cancelled job can be resubmitted" in response.content
    assert response.redirect_chain[-1][0] == "/ui/jobs/?state=Running"
    response = admin.post("/ui/jobs/job-1/cancel", {"next": "https://elsewhere.example/"})
    assert response["Location"] == "/ui/jobs/"
    assert Job.objects.get(pk="job-1").requested == "cancel"
    assert admin.post("/ui/jobs/nope/cancel").status_code == 404
    assert admin.post("/ui/jobs/job-1/explode").status_code == 404
    response = admin.get("/ui/jobs/?state=Running", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b'id="jobs-table"' in response.content
    assert b"<html" not in response.content  # a fragment for the poll


def test_modality_and_peer_forms_use_the_rest_rules(admin):
    response = admin.post("/ui/modalities/new", {"name": "ct 1", "aet": "CT1", "host": "h", "port": 104})
    assert response.status_code == 200 and b"letters, digits" in response.content
    response = admin.post("/ui/modalities/new", {"name": "ct1", "aet": "CT1", "host": "h", "port": 104,
                                                 "allow_find": "on"})
    assert response.status_code == 302
    modality = Modality.objects.get(name="ct1")
    assert (modality.aet, modality.allow_find, modality.allow_move) == ("CT1", True, False)
    response = admin.post("/ui/modalities/new", {"name": "ct1", "aet": "CT1", "host": "h", "port": 104})
    assert b"exists already" in response.content
    port = servers.free_port()
    response = admin.post("/ui/modalities/ct1/edit", {"name": "renamed", "aet": "CT2", "host": "127.0.0.1",
                                                      "port": port})
    assert response.status_code == 302
    assert list(Modality.objects.values_list("name", "aet", "port")) == [("ct1", "CT2", port)]
    assert admin.get("/ui/modalities/nope/edit").status_code == 404
    response = admin.post("/ui/peers/new", {"name": "b", "url": "http://site-b:8042", "password": "secret"})
    assert response.status_code == 302
    assert Peer.objects.get(name="b").url == "http://site-b:8042/"
    admin.post("/ui/peers/b/edit", {"url": "http://site-b:8043/", "username": "u"})
    peer = Peer.objects.get(name="b")
    assert (peer.url, peer.username, peer.password) == ("http://site-b:8043/", "u", "secret")
    response = admin.get("/ui/peers/b/edit")
    assert b"secret" not in response.content  # a password is never shown
    assert admin.post("/ui/peers/b/delete").status_code == 302 and not Peer.objects.exists()
    response = admin.post("/ui/modalities/ct1/echo", HTTP_HX_REQUEST="true")  # nobody listens there
    assert response.status_code == 200 and b"Echo failed" in response.content


def test_home_counts_and_chart(admin):
    _studies(admin, SPECS[:2])
    response = admin.get("/ui/")
    chart = response.context["chart"]
    assert len(chart["bars"]) == 30 and chart["total"] == 2 and chart["bars"][-1]["count"] == 2
    assert response.context["counts"] == {"patients": 2, "studies": 2, "series": 2, "instances": 2}
    assert b"DOE, JANE" in response.content


def test_change_log_filters_and_pages(admin):
    _studies(admin, SPECS)
    response = admin.get("/ui/changes/?type=NewStudy")
    assert [c.change_type for c in response.context["changes"]] == ["NewStudy"] * 5
    response = admin.get("/ui/changes/?level=Patient&page=2")
    assert response.context["changes"] == [] and b"No change on this page" in response.content
    response = admin.get("/ui/changes/?type=Bogus&page=x")  # an unknown filter is no filter
    assert response.status_code == 200 and len(response.context["changes"]) == 20


def test_cluster_page_and_drain(admin, settings):
    from cluster.registry import Heartbeat

    Heartbeat("web").beat()
    response = admin.get("/ui/cluster/")
    assert response.status_code == 200 and settings.NODE_NAME.encode() in response.content
    response = admin.post(f"/ui/cluster/{settings.NODE_NAME}/drain")
    assert response.status_code == 302
    overview = admin.get("/ui/cluster/").context["cluster"]
    assert overview["nodes"][0]["Draining"] is True
    assert any("draining" in w for w in overview["warnings"])
    admin.post(f"/ui/cluster/{settings.NODE_NAME}/undrain")
    assert admin.get("/ui/cluster/").context["cluster"]["nodes"][0]["Draining"] is False
    assert admin.post("/ui/cluster/unknown-node/drain").status_code == 404
    assert json.loads(admin.get("/cluster/nodes").content)  # the same registry as the REST route


def test_cluster_warnings(db):
    from archive.models import FileDeletion
    from cluster.models import NodeProcess
    from console.views.cluster import OUTBOX_WARNING, overview

    now = timezone.now()
    common = dict(kind="web", host="h", pid=1, version="0.1.0", started_at=now, rss=1 << 20, queues={})
    NodeProcess.objects.create(key="a", node="a", settings_hash="1111", last_seen=now, **common)
    NodeProcess.objects.create(key="b", node="b", settings_hash="2222", last_seen=now, **common)
    NodeProcess.objects.create(key="c", node="c", settings_hash="1111", last_seen=now - timezone.timedelta(hours=1),
                               **common)
    warnings = overview()["warnings"]
    assert any("different shared settings" in w and "a (1111)" in w and "b (2222)" in w for w in warnings)
    assert any(w.startswith("Node c is down") for w in warnings)
    assert not any("deleted files" in w for w in warnings)
    FileDeletion.objects.bulk_create([FileDeletion(storage_key=f"k{n}", created_at=now)
                                      for n in range(OUTBOX_WARNING + 1)])
    assert any(f"{OUTBOX_WARNING + 1} deleted files are waiting" in w for w in overview()["warnings"])


def test_console_actions_go_to_the_audit_trail(admin):
    from archive.models import AuditEvent

    _studies(admin, SPECS[:1])
    study = Study.objects.get().public_id
    admin.get("/ui/studies/?patient_name=doe")
    admin.get(f"/ui/studies/{study}/")
    admin.post("/ui/modalities/new", {"name": "ct9", "aet": "CT9", "host": "127.0.0.1", "port": 104})
    admin.post(f"/ui/studies/{study}/delete")
    events = list(AuditEvent.objects.order_by("id").values_list("actor", "action", "resource", "details"))
    assert {e[0] for e in events} == {"admin-user"}
    assert [(action, resource) for _, action, resource, _ in events] == [
        ("store", study), ("query", ""), ("read", study), ("configure", ""), ("delete", study)]
    assert events[1][3]["query"] == {"PatientName": "doe"}  # the words typed
    assert all(e[3]["via"] == "console" for e in events)


def test_audit_page_shows_the_trail_filtered(admin):
    _studies(admin, SPECS[:1])
    study = Study.objects.get().public_id
    assert admin.get(f"/ui/studies/{study}/").status_code == 200
    page = admin.get("/ui/audit/")
    assert page.status_code == 200
    rows = page.content.decode().split('<tr data-action="')[1:]
    assert [row.split('"')[0] for row in rows] == ["read", "store"]  # newest first
    assert "admin-user" in rows[1] and study in rows[1]
    only_reads = admin.get("/ui/audit/?action=read").content.decode()
    assert only_reads.count('<tr data-action="') == 1 and study in only_reads
    assert b"Nothing recorded matches" in admin.get("/ui/audit/?actor=someone-else").content
    assert b"Nothing recorded matches" in admin.get("/ui/audit/?since=2999-01-01").content
    bad = admin.get("/ui/audit/?since=yesterday")
    assert bad.status_code == 200 and b"since must be an ISO 8601 date" in bad.content
    assert Client().get("/ui/audit/").status_code == 302  # signed out


def test_tokens_are_created_shown_once_and_revoked_from_the_console(admin, django_user_model):
    from archive.models import ApiToken, AuditEvent

    django_user_model.objects.create_superuser("admin", password=servers.ADMIN_PASSWORD)
    page = admin.post("/ui/tokens/", {"name": "nightly-export", "user": "admin"})
    assert page.status_code == 200
    secret = page.content.decode().split('id="token-secret">')[1].split("<")[0]
    assert secret.startswith("pacs_")
    row = ApiToken.objects.get()
    assert row.name == "nightly-export" and row.user.username == "admin" and secret not in row.digest
    assert secret.encode() not in admin.get("/ui/tokens/").content  # shown once
    script = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert script.get("/statistics").status_code == 200
    refused = admin.post("/ui/tokens/", {"name": "", "user": "admin"})
    assert b"No token created" in refused.content and ApiToken.objects.count() == 1
    revoked = admin.post(f"/ui/tokens/{row.prefix}/revoke", follow=True)
    assert b"revoked" in revoked.content
    assert script.get("/statistics").status_code == 401
    configured = AuditEvent.objects.filter(action="configure", actor="admin-user").order_by("id")
    assert [e.details.get("revoked", False) for e in configured] == [False, True]
    assert all(e.details["token"] == row.prefix for e in configured)


def test_pause_resume_and_cancel_buttons_follow_the_state(admin):
    Job.objects.create(id="job-2", type="Archive", params={"resources": []}, created_at=timezone.now())
    page = admin.get("/ui/jobs/").content.decode()
    assert 'data-action="pause"' in page and 'data-action="cancel"' in page and 'data-action="resume"' not in page
    admin.post("/ui/jobs/job-2/pause")
    assert Job.objects.get(pk="job-2").state == JobState.PAUSED
    page = admin.get("/ui/jobs/").content.decode()
    assert 'data-action="resume"' in page and 'data-action="pause"' not in page
    admin.post("/ui/jobs/job-2/resume")
    assert Job.objects.get(pk="job-2").state == JobState.PENDING
    admin.post("/ui/jobs/job-2/cancel")
    assert Job.objects.get(pk="job-2").state == JobState.CANCELLED
    page = admin.get("/ui/jobs/?state=Cancelled").content.decode()
    assert 'data-action="resubmit"' in page and 'data-action="cancel"' not in page
