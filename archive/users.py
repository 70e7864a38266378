"""User accounts and their role: what the console's Users page and `manage.py user` change.

A role is one of the groups of archive.roles (viewer, uploader, admin); an account
holds one. Passwords follow AUTH_PASSWORD_VALIDATORS (PACS_PASSWORD_MIN_LENGTH).
The archive always keeps one active administrator: the last one can be neither
disabled nor given a lesser role, or nobody could undo it but a shell.
"""

import re
import secrets

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db.models import Count, Q

from archive import db
from archive.errors import InvalidAccount
from archive.roles import ADMIN, ROLES, UPLOADER, VIEWER

# What Django's own username field accepts, without the spaces a typing slip adds.
USERNAME = re.compile(r"^[\w.@+-]{1,150}$")


def accounts():
    """Every account, by name, with `role` and `active_tokens` annotated for a list page."""
    rows = (get_user_model().objects.order_by("username").prefetch_related("groups")
            .annotate(active_tokens=Count("api_tokens", filter=Q(api_tokens__revoked_at__isnull=True))))
    for user in rows:
        user.role = role_of(user)
        yield user


def role_of(user):
    """The role the account holds (the strongest of its groups; superusers are admins), or ""."""
    if user.is_superuser:
        return ADMIN
    held = {group.name for group in user.groups.all()}
    for role in (ADMIN, UPLOADER, VIEWER):
        if role in held:
            return role
    return ""


def create(username, role, password=None):
    """A new active account with `role`; without a password one is generated.
    Returns (user, password)."""
    username = (username or "").strip()
    if not USERNAME.match(username):
        raise InvalidAccount("a user name is 1 to 150 letters, digits and . @ + - _")
    _check_role(role)
    User = get_user_model()
    password = password or generated_password()
    check_password(password, User(username=username))
    # A racing creation of the same name fails the insert; its replay sees the name taken.
    return db.run(_create, username, role, password), password


def _create(username, role, password):
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        raise InvalidAccount(f"a user named {username!r} exists already")
    user = User.objects.create_user(username=username, password=password)
    user.groups.set([Group.objects.get(name=role)])
    return user


def set_role(user, role):
    """Give the account `role` in place of the one it holds."""
    _check_role(role)
    db.run(_set_role, user, role)


def _set_role(user, role):
    if role != ADMIN:
        _keep_an_admin(user)
        # A superuser is an admin whatever its groups: a lesser role takes that away.
        user.is_superuser = user.is_staff = False
        user.save(update_fields=["is_superuser", "is_staff"])
    user.groups.remove(*Group.objects.filter(name__in=ROLES))
    user.groups.add(Group.objects.get(name=role))


def set_active(user, active):
    """Enable or disable the account; a disabled account cannot sign in and its tokens are refused."""
    db.run(_set_active, user, active)


def _set_active(user, active):
    if not active:
        _keep_an_admin(user)
    user.is_active = active
    user.save(update_fields=["is_active"])


def reset_password(user, password=None):
    """Set a new password (generated when none is given); returns it."""
    password = password or generated_password()
    check_password(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])
    return password


def check_password(password, user):
    try:
        password_validation.validate_password(password, user)
    except ValidationError as error:
        raise InvalidAccount(" ".join(error.messages))


def generated_password():
    return secrets.token_urlsafe(12)


def _check_role(role):
    if role not in ROLES:
        raise InvalidAccount(f"the role is one of {', '.join(ROLES)}, not {role!r}")


def _keep_an_admin(user):
    if role_of(user) != ADMIN or not user.is_active:
        return
    User = get_user_model()
    in_admin_group = User.groups.through.objects.filter(group__name=ADMIN).values("user_id")
    # Locked: two administrators disabling each other at once must not both succeed.
    others = (User.objects.select_for_update().filter(is_active=True).exclude(pk=user.pk)
              .filter(Q(is_superuser=True) | Q(pk__in=in_admin_group)))
    if not others.exists():
        raise InvalidAccount(f"{user.get_username()} is the last active administrator")
