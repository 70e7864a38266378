"""Who may do what in the console, and how its failures look.

pacsweb.access hands every /ui/ request to the console untouched (the console
has its own session login): the console decides here. Every view is wrapped by
console_view(), which names the role its GET and its POST need; a request
without that role gets 403, whatever the page showed. The roles are the
project's (pacsweb.access): viewer reads, uploader reads and stores, admin does
everything.

| what                                          | role      |
|-----------------------------------------------|-----------|
| every page, search, study, viewer             | viewer    |
| prepare a ZIP / DICOMDIR (a job)              | viewer    |
| upload                                        | uploader  |
| delete, send, job actions, drain, modalities, | admin     |
| peers (add, edit, delete, echo, test)         |           |

The table is exact in the views themselves (their decorator) and listed at run
time by route_roles(); the tests walk it. What the console does to patient data
or the configuration goes to the audit trail (audit() below), as over REST.
"""

import functools
import logging
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render

from pacsweb.access import ADMIN, UPLOADER, VIEWER, has_role
from pacsweb.audit import record
from pacsweb.db import DatabaseBusy

log = logging.getLogger("pacsweb.console")

LOGIN_URL = "/ui/login/"
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


def console_view(get=VIEWER, post=None, kind=PAGE):
    """Wrap a console view: sign-in, the role of the method, and failures as pages.

    `get` / `post`: the role a GET / POST needs (None: that method is not allowed).
    `kind`: what the view answers (a page, an htmx fragment, or JSON), so that a
    refusal or a failure comes back in a form the caller can show: JSON for the
    upload script, a fragment for an htmx request, a whole page otherwise.
    """

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method in ("GET", "HEAD"):
                role = get
            elif request.method == "POST":
                role = post
            else:
                role = None
            if role is None:
                allowed = [m for m, r in (("GET", get), ("POST", post)) if r]
                response = failure(request, 405, "Not allowed",
                                   f"This address answers {' and '.join(allowed)} only.", kind)
                response["Allow"] = ", ".join(allowed)
                return response
            if not request.user.is_authenticated:
                return _sign_in(request, kind)
            request.roles = Roles(request.user)
            request.console = {"node": settings.NODE_NAME, "version": settings.VERSION}
            if not request.roles.has(role):
                held = "no role yet" if request.roles.name == "no role" else f"the {request.roles.name} role"
                return failure(request, 403, "Not allowed",
                               f"This needs the {ROLE_WORDS[role]} role; your account has {held}. "
                               "An administrator can change it.", kind)
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

        wrapper.console_roles = {"GET": get, "POST": post}
        return wrapper

    return decorate


def _sign_in(request, kind):
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


def audit(request, action, level="", resource="", status=200, **details):
    """Record a console action in the audit trail (pacsweb.audit), as the access
    middleware records the same action made over REST: the console's own pages
    do not pass through it."""
    record("user", request.user.get_username(), action, address=request.META.get("REMOTE_ADDR", ""),
           method=request.method, path=request.path[:500], status=status, level=level, resource=resource,
           details={"via": "console", **details})


def route_roles():
    """{route pattern: {"GET": role, "POST": role}} of every console route."""
    from console import urls  # noqa: PLC0415

    table = {}
    for pattern in urls.urlpatterns:
        roles = getattr(pattern.callback, "console_roles", None)
        table[str(pattern.pattern)] = roles
    return table
