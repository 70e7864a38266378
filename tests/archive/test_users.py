"""archive.users and `manage.py user`: accounts, roles, password rules, the last administrator."""

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from archive import users
from archive.errors import InvalidAccount
from archive.models import AuditEvent
from archive.roles import ADMIN, UPLOADER, VIEWER, has_role

pytestmark = pytest.mark.django_db


def test_created_account_holds_its_role_only():
    user, password = users.create("alice", VIEWER, "correct-horse-battery")
    assert password == "correct-horse-battery"
    assert users.role_of(user) == VIEWER
    assert has_role(user, VIEWER) and not has_role(user, UPLOADER)
    assert user.check_password("correct-horse-battery")


def test_password_rules_refuse_short_common_and_numeric_passwords():
    for weak in ("short", "password123", "12345678901234"):
        with pytest.raises(InvalidAccount):
            users.create("bob", VIEWER, weak)
    assert not User.objects.filter(username="bob").exists()


def test_taken_and_malformed_names_and_unknown_roles_are_refused():
    users.create("carol", VIEWER)
    with pytest.raises(InvalidAccount, match="exists already"):
        users.create("carol", UPLOADER)
    with pytest.raises(InvalidAccount):
        users.create("carol smith", VIEWER)
    with pytest.raises(InvalidAccount, match="role"):
        users.create("dave", "superhero")


def test_a_new_role_replaces_the_old_one_and_a_superuser_can_be_demoted():
    User.objects.create_superuser("root", password="x")
    boss = User.objects.create_superuser("boss", password="x")
    users.set_role(boss, VIEWER)
    boss.refresh_from_db()
    assert users.role_of(boss) == VIEWER and not has_role(boss, UPLOADER)
    users.set_role(boss, UPLOADER)
    assert [g.name for g in boss.groups.all()] == [UPLOADER]


def test_the_last_active_administrator_can_be_neither_disabled_nor_demoted():
    only = User.objects.create_superuser("only", password="x")
    with pytest.raises(InvalidAccount, match="last active administrator"):
        users.set_active(only, False)
    with pytest.raises(InvalidAccount, match="last active administrator"):
        users.set_role(only, VIEWER)
    second, _ = users.create("second", ADMIN)
    users.set_active(only, False)
    only.refresh_from_db()
    assert not only.is_active and not has_role(only, VIEWER)
    with pytest.raises(InvalidAccount):
        users.set_active(second, False)


def test_reset_password_generates_one_that_signs_in():
    user, _ = users.create("erin", VIEWER)
    password = users.reset_password(user)
    user.refresh_from_db()
    assert user.check_password(password)


def test_command_creates_an_account_with_a_generated_password_and_audits_it():
    out = io.StringIO()
    call_command("user", "create", "frank", "--role", "uploader", stdout=out)
    password = out.getvalue().split("shown only this once): ")[1].strip()
    frank = User.objects.get(username="frank")
    assert frank.check_password(password) and users.role_of(frank) == UPLOADER
    event = AuditEvent.objects.get(action="configure")
    assert event.details["account"] == "frank" and password not in str(event.details)
    call_command("user", "role", "frank", "viewer", stdout=out)
    assert users.role_of(User.objects.get(username="frank")) == VIEWER
    with pytest.raises(CommandError, match="no user"):
        call_command("user", "disable", "nobody")
