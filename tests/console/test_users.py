"""The Users page: administrators create accounts with a role, change it, disable them and
reset passwords; every change is an audit row; nobody else sees the page."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from archive import users
from archive.models import AuditEvent, Study
from archive.roles import UPLOADER, VIEWER
from tests.console.phantom import ct_series
from tests.console.test_console_views import store


@pytest.fixture
def admin_client(as_role):
    return as_role("admin")


def test_only_administrators_see_and_use_the_users_page(admin_client, as_role):
    assert b'href="/ui/users/"' in admin_client.get("/ui/").content
    viewer = as_role("viewer")
    assert b'href="/ui/users/"' not in viewer.get("/ui/").content
    assert viewer.get("/ui/users/").status_code == 403
    assert viewer.post("/ui/users/", {"username": "x", "role": "admin"}).status_code == 403
    assert not User.objects.filter(username="x").exists()


def test_a_viewer_created_here_can_view_and_cannot_delete(admin_client):
    (data,) = ct_series("usr", 1)
    store(admin_client, data)
    study = Study.objects.get().public_id
    response = admin_client.post("/ui/users/", {"username": "vera", "role": "viewer", "password": "",
                                                 "password2": ""})
    password = response.context["shown"]["password"]
    assert password.encode() in response.content and b"shown this once" in response.content
    vera = Client()
    assert vera.login(username="vera", password=password)
    assert vera.get(f"/ui/studies/{study}/").status_code == 200
    assert vera.get(f"/studies/{study}").status_code == 200
    assert vera.post(f"/ui/studies/{study}/delete").status_code == 403
    assert vera.delete(f"/studies/{study}").status_code == 403
    assert Study.objects.filter(public_id=study).exists()
    row = AuditEvent.objects.get(action="configure")
    assert row.details == {"via": "console", "account": "vera", "created": True, "role": "viewer"}
    page = admin_client.get("/ui/users/").content.decode()
    assert 'data-user="vera"' in page and password not in page  # shown once


def test_password_rules_and_the_confirmation_are_enforced(admin_client):
    response = admin_client.post("/ui/users/", {"username": "bob", "role": "viewer", "password": "short",
                                                 "password2": "short"}, follow=True)
    assert b"No account created" in response.content and b"too short" in response.content
    response = admin_client.post("/ui/users/", {"username": "bob", "role": "viewer",
                                                 "password": "a-long-passphrase", "password2": "other"}, follow=True)
    assert b"differ" in response.content
    assert not User.objects.filter(username="bob").exists()
    admin_client.post("/ui/users/", {"username": "bob", "role": "uploader", "password": "a-long-passphrase",
                                      "password2": "a-long-passphrase"})
    assert users.role_of(User.objects.get(username="bob")) == UPLOADER


def test_role_disable_and_password_reset(admin_client):
    carol, _ = users.create("carol", UPLOADER)
    admin_client.post("/ui/users/carol/role", {"role": "viewer"})
    carol.refresh_from_db()
    assert users.role_of(carol) == VIEWER
    admin_client.post("/ui/users/carol/active", {"active": "no"})
    carol.refresh_from_db()
    assert not carol.is_active
    response = admin_client.post("/ui/users/carol/password")
    password = response.context["shown"]["password"]
    carol.refresh_from_db()
    assert carol.check_password(password)
    # An administrator cannot lock themselves out from here.
    me = User.objects.get(username="admin-user")
    response = admin_client.post("/ui/users/admin-user/active", {"active": "no"}, follow=True)
    me.refresh_from_db()
    assert me.is_active and b"cannot disable your own account" in response.content
    details = [e.details for e in AuditEvent.objects.filter(action="configure").order_by("id")]
    assert details == [{"via": "console", "account": "carol", "role": "viewer"},
                       {"via": "console", "account": "carol", "active": False},
                       {"via": "console", "account": "carol", "password_reset": True}]
    assert admin_client.post("/ui/users/nobody/role", {"role": "viewer"}).status_code == 404
