"""How the console's refusals and failures look, and what a view knows of its user.

Every view is wrapped by console_view(), which declares the role each method
needs (a page a viewer reads and nobody posts to, unless it says otherwise) and
what the view answers (a page, an htmx fragment, JSON), so that a refusal comes
back in a form the caller can show; it turns failures into pages. The access
middleware checks those roles before the view runs, as it checks every REST
route: viewer reads, uploader reads and stores, admin does everything. What the console does to
patient data or the configuration goes to the audit trail (audit() below), as
over REST.
"""

import functools
import logging
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from archive.roles import ADMIN, UPLOADER, VIEWER, has_role
from archive.audit import record
from archive.errors import DatabaseBusy, MissingFile

log = logging.getLogger("pacsweb.console")

LOGIN_URL = settings.LOGIN_URL
PAGE, FRAGMENT, JSON = "page", "fragment", "json"
ROLE_WORDS = {VIEWER: "viewer", UPLOADER: "uploader", ADMIN: "admin"}


class Roles:
    """What the signed-in user may do, asked once per request."""

    def __init__(self, user):
        self.admin = has_role(user, ADMIN)
        self.uploader = self.admin or has_role(user, UPLOADER)
        self.viewer = self.uploader or has_role(user, VIEWER)

    def has(self, role):
        return {VIEWER: self.viewer, UPLOADER: self.uploader, ADMIN: self.admin}[role]

    @property
    def name(self):
        if self.admin:
            return "admin"
        if self.uploader:
            return "uploader"
        if self.viewer:
            return "viewer"
        return "no role"


def is_htmx(request):
    return request.headers.get("HX-Request") == "true"


def console_view(kind=PAGE, **roles):
    """Wrap a console view: the role each method needs (`GET=`, `POST=`; None:
    the method is not answered; by default a viewer reads and nobody posts), what
    it answers (`kind`: a page, an htmx fragment or JSON, read by the access
    middleware for its refusals), the user's roles for its templates, and failures
    as pages rather than stack traces."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            _describe_user(request)
            try:
                return view(request, *args, **kwargs)
            except Http404 as missing:
                return failure(request, 404, "Not found", str(missing) or "There is nothing at this address.", kind)
            except DatabaseBusy:
                return failure(request, 503, "Busy",
                               "The database is busy with other writers. Try again in a moment.", kind)
            except Exception:
                log.exception("console: %s %s failed", request.method, request.path)
                return failure(request, 500, "Something went wrong",
                               "The server could not complete this request. The error was logged "
                               "for the administrator; try again, or go back.", kind)

        wrapper.console_kind = kind
        wrapper.roles = {"GET": VIEWER, "POST": None, **roles}
        return wrapper

    return decorate


def _describe_user(request):
    """What the console's templates show of the user and the node."""
    request.roles = Roles(request.user)
    request.console = {"node": settings.NODE_NAME, "version": settings.VERSION}


def not_allowed(request, allowed, kind=PAGE):
    response = failure(request, 405, "Not allowed", f"This address answers {' and '.join(allowed)} only.", kind)
    response["Allow"] = ", ".join(allowed)
    return response


def refused(request, role, kind=PAGE):
    _describe_user(request)
    held = "no role yet" if request.roles.name == "no role" else f"the {request.roles.name} role"
    return failure(request, 403, "Not allowed",
                   f"This needs the {ROLE_WORDS[role]} role; your account has {held}. "
                   "An administrator can change it.", kind)


def sign_in(request, kind=PAGE):
    target = f"{LOGIN_URL}?next={quote(request.get_full_path())}"
    if kind == JSON:
        return JsonResponse({"error": "Your session has ended: sign in again."}, status=401)
    if is_htmx(request):
        # htmx follows HX-Redirect with a full page load.
        response = HttpResponse(status=401)
        response["HX-Redirect"] = target
        return response
    return redirect_to_login(request.get_full_path(), LOGIN_URL)


def failure(request, status, title, message, kind=PAGE):
    """A refusal or an error in the form the caller expects."""
    if kind == JSON:
        return JsonResponse({"error": message}, status=status)
    if is_htmx(request):  # swapped into the page that asked (a fragment view asked without htmx gets a page)
        return render(request, "console/_error_fragment.html", {"title": title, "message": message},
                      status=status)
    return render(request, "console/error.html", {"status": status, "title": title, "message": message},
                  status=status)


def refusal_words(error):
    """What the console tells its user of an archive error (the words the REST API uses)."""
    if isinstance(error, DatabaseBusy):
        return "the database is busy with concurrent writers; retry shortly"
    if isinstance(error, MissingFile):
        return "the stored file of this resource is missing from the storage area"
    return str(error)


def audit(request, action, level="", resource="", status=200, **details):
    """Record a console action in the audit trail (archive.audit), as the access
    middleware records the same action made over REST: the console's own pages
    do not pass through it."""
    record("user", request.user.get_username(), action, address=request.META.get("REMOTE_ADDR", ""),
           method=request.method, path=request.path[:500], status=status, level=level, resource=resource,
           details={"via": "console", **details})


def newest_first(request, rows, size):
    """Page ?page= of `rows` (newest first) for the "Newer / Older" pager: {"rows",
    "page_number", "has_previous", "has_next"}. Counting every row of a busy log is
    costly; the pager only needs to know whether an older page exists, so one row
    more than shown is fetched."""
    number = page_number(request)
    offset = (number - 1) * size
    found = list(rows[offset:offset + size + 1])
    return {"rows": found[:size], "page_number": number, "has_previous": number > 1, "has_next": len(found) > size}


def page_number(request):
    """The page ?page= asks for, from 1 (anything else: the first)."""
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


def back_to(request, default):
    """Where a form's action returns (its `next` field, a console page of this site), or `default`."""
    target = request.POST.get("next", "")
    if target.startswith("/ui/") and url_has_allowed_host_and_scheme(target, allowed_hosts=None):
        return target
    return default
