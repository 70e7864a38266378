"""Roles, and who may call a route: declared on the view the route names.

Roles are Django groups: viewer (read), uploader (read and store), admin
(everything; superusers are admins). The rule every route follows unless its
view says otherwise: reading is a viewer's, anything else an admin's. A view
that differs says so with @allow(...), so a route cannot exist without its roles
and no table can name a route that does not exist.
"""

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
    granted = set(user.groups.values_list("name", flat=True))
    if ADMIN in granted:
        return True
    if role == UPLOADER:
        return UPLOADER in granted
    if role == VIEWER:
        return bool(granted & {VIEWER, UPLOADER})
    return False
