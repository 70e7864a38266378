"""Roles, and who may call a route: declared on the view the route names.

Roles are Django groups: viewer (read), uploader (read and store), admin
(everything; superusers are admins). The rule every route follows unless its
view says otherwise: reading is a viewer's, anything else an admin's. A view
that differs says so with @allow(...), so a route cannot exist without its roles
and no table can name a route that does not exist.
"""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models.expressions import RawSQL

from archive import db
from archive.errors import CredentialsRefused

VIEWER = "viewer"
UPLOADER = "uploader"
ADMIN = "admin"
ROLES = (VIEWER, UPLOADER, ADMIN)
# Anyone, signed in or not (the sign-in page).
OPEN = "open"
READS = ("GET", "HEAD", "OPTIONS")


def allow(**by_method):
    """Declare the role each method needs on this view, e.g.
    @allow(POST=UPLOADER); None for a method the route does not answer."""

    def declare(view):
        view.roles = {**getattr(view, "roles", {}), **by_method}
        return view

    return declare


def checks_credentials(*methods):
    """Declare that a view answers `methods` with a statement of its own that checks the
    request's remembered credentials (`request.credentials_to_confirm`, a Credentials):
    each store's transaction (archive.ingest, through api.rest.bodies.upload_origin), a
    read's lookup (archive.resources.describe_by_id, dicom_file), a search's statement
    (archive.query.find, for QIDO-RS). The access check then
    sends no query of its own for them, and checks them itself after a view whose
    statement did not (nothing found, nothing stored)."""

    def declare(view):
        view.checks_credentials = frozenset(methods)
        return view

    return declare


def remembered_credentials(request):
    """The Credentials a view declared checks_credentials checks in its own statement,
    None when the access check read them itself (or there are none)."""
    return getattr(request, "credentials_to_confirm", None)


def required(view, method):
    """The role `method` needs on `view` (None: the route does not answer it)."""
    declared = getattr(view, "roles", {})
    if method == "HEAD" and "HEAD" not in declared:
        method = "GET"
    if method in declared:
        return declared[method]
    return VIEWER if method in READS else ADMIN


def has_role(user, role):
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    granted = getattr(user, "granted_groups", None)
    if granted is None:
        granted = set(user.groups.values_list("name", flat=True))
    return not granted.isdisjoint(_GRANTING.get(role, ()))


# The groups that grant each role: an admin may do anything, an uploader also reads.
_GRANTING = {VIEWER: (VIEWER, UPLOADER, ADMIN), UPLOADER: (UPLOADER, ADMIN), ADMIN: (ADMIN,)}


def active_user(pk):
    """The active user `pk`, with the names of its groups as `granted_groups`, or None.

    One query: a script's every request asks it (the password may have changed,
    the account been disabled, on any node), and the ORM's two queries cost a
    tenth of what storing a small file costs. The fields not read here (names,
    e-mail, dates) are deferred: Django loads them if anything asks."""
    user_model = get_user_model()
    with db.statements() as cursor:
        cursor.execute(_active_user_sql(user_model, connection), [pk])
        rows = cursor.fetchall()
    if not rows:
        return None
    names = _user_fields(user_model)
    user = user_model.from_db(connection.alias, names, [bool(value) if name.startswith("is_") else value
                                                        for name, value in zip(names, rows[0])])
    user.granted_groups = {row[-1] for row in rows if row[-1] is not None}
    return user


_USER_FIELDS = {"id", "username", "password", "is_active", "is_superuser", "is_staff"}
_sql = {}


def _user_fields(user_model):
    # from_db() takes the values of a subset in the model's order of fields.
    return [field.attname for field in user_model._meta.concrete_fields if field.attname in _USER_FIELDS]


def _active_user_sql(user_model, connection):
    key = (user_model, connection.vendor)
    if key not in _sql:
        meta = user_model._meta
        memberships = meta.get_field("groups").remote_field.through._meta
        quote = connection.ops.quote_name
        columns = ", ".join(f"u.{quote(meta.get_field(name).column)}" for name in _user_fields(user_model))
        _sql[key] = (
            f"SELECT {columns}, g.name FROM {quote(meta.db_table)} u"
            f" LEFT JOIN {quote(memberships.db_table)} m ON m.{quote(memberships.get_field('user').column)} = u.id"
            f" LEFT JOIN {quote(meta.get_field('groups').related_model._meta.db_table)} g"
            f" ON g.id = m.{quote(memberships.get_field('group').column)}"
            f" WHERE u.id = %s AND u.is_active"
        )
    return _sql[key]


@dataclass(eq=False)
class Credentials:
    """A script's credentials as the access check last found them good, for a
    write to check again in its own transaction (archive.ingest) instead of a
    query of their own: a store is then one transaction, and a disabled account
    still cannot store once the change is committed, on any node. The write sets
    `confirmed` when they still held, `refused` when they no longer did."""

    user_id: int
    password: str  # the hash the credentials matched
    role: str
    confirmed: bool = False
    refused: bool = False

    def settle(self, held):
        """Record what the request's own statement found (credentials_hold()); raises
        CredentialsRefused when they no longer hold."""
        if not held:
            self.refused = True
            raise CredentialsRefused("the credentials no longer hold: the account was disabled, its password "
                                     "changed or its role taken away")
        self.confirmed = True


def credentials_column(credentials, user_id=None, password=None):
    """credentials_hold() as a queryset's annotation, with the credentials' values (or
    the given stand-ins for them). Uncorrelated: the database evaluates it once, not
    per row."""
    return RawSQL(credentials_hold(credentials.role),
                  (credentials.user_id if user_id is None else user_id,
                   credentials.password if password is None else password))


def credentials_hold(role, user="%s", password="%s"):
    """An SQL condition, true while an account is active, has the same password
    hash and holds `role`; `user` and `password` are its two parameter markers
    (for Credentials' user_id and password), as the calling statement writes them."""
    key = (role, user, password, connection.vendor)
    if key not in _sql:
        _sql[key] = _credentials_hold(role, user, password)
    return _sql[key]


def _credentials_hold(role, user, password):
    user_model = get_user_model()
    meta = user_model._meta
    memberships = meta.get_field("groups").remote_field.through._meta
    quote = connection.ops.quote_name
    groups = ", ".join("'" + name + "'" for name in _GRANTING[role])
    return (
        f"EXISTS (SELECT 1 FROM {quote(meta.db_table)} u WHERE u.id = {user} AND u.is_active"
        f" AND u.{quote(meta.get_field('password').column)} = {password}"
        f" AND (u.is_superuser OR EXISTS (SELECT 1 FROM {quote(memberships.db_table)} m"
        f" JOIN {quote(meta.get_field('groups').related_model._meta.db_table)} g"
        f" ON g.id = m.{quote(memberships.get_field('group').column)}"
        f" WHERE m.{quote(memberships.get_field('user').column)} = u.id AND g.name IN ({groups}))))"
    )
