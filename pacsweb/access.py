"""Who may do what: authentication and roles, enforced here for every route.

REST and DICOMweb clients authenticate with HTTP Basic or an API token; a
browser with its console session. Roles are Django groups: viewer (read),
uploader (read and store), admin (everything; superusers are admins). Only the
load balancer's probes (and the sign-in page) are open. REST routes get their
role from required_role(), console pages from CONSOLE_ROUTES: no view checks a
role itself.
"""

import base64
import binascii
import hashlib
import re
import threading
import time

from django.conf import settings
from django.contrib.auth import authenticate
from django.http import JsonResponse
from django.middleware.csrf import CsrfViewMiddleware

from archive import audit, tokens
from cluster import throttle

VIEWER = "viewer"
UPLOADER = "uploader"
ADMIN = "admin"
ROLES = (VIEWER, UPLOADER, ADMIN)

OPEN_PATHS = {"/healthz", "/readyz"}
# Pages with their own login (the Django admin, the console) and their assets.
SESSION_PREFIXES = ("/admin/", "/ui/", "/static/")
# Writes that store instances: what an uploader may do beyond reading.
STORE_ROUTES = {("POST", "/instances")}
STORE_PREFIXES = ("/dicom-web/studies",)
# POSTs that only read (Orthanc puts queries in POST bodies).
READ_POSTS = {"/tools/find", "/tools/lookup", "/tools/create-archive", "/tools/create-media",
              "/tools/create-media-extended"}
READ_POST_PATTERN = re.compile(r"^/(patients|studies|series)/[^/]+/(archive|media)$")

# Checking a password costs a deliberate ~0.3 s of PBKDF2; a script storing
# thousands of files sends the same credentials each time. Remember a success
# briefly, keyed by a hash of the credentials (never the password itself), with
# the user it found: a deactivated account keeps access on a process for at
# most CREDENTIAL_CACHE_SECONDS.
CREDENTIAL_CACHE_SECONDS = 60
_credential_cache = {}
_cache_lock = threading.Lock()


# Reads only administrators may make: the audit trail and the token list.
ADMIN_READS = ("/audit", "/tokens")


# The console (/ui/), by route name: the role its GET and its POST need; None:
# that method is not allowed there; OPEN: no sign-in. A route not listed is a
# page a viewer reads and nobody posts to. The same rule as REST: reading is a
# viewer's, storing an uploader's, everything else an admin's.
OPEN = "open"
CONSOLE_PAGE = (VIEWER, None)
CONSOLE_ROUTES = {
    "login": (OPEN, OPEN),
    "logout": (None, OPEN),
    "study-delete": (ADMIN, ADMIN),  # the GET is the confirmation page
    "study-prepare": (None, VIEWER),  # an archive to download: a read
    "study-send": (None, ADMIN),
    "upload": (UPLOADER, UPLOADER),
    "upload-file": (None, UPLOADER),
    "job-action": (None, ADMIN),
    "node-action": (None, ADMIN),
    "modality-new": (ADMIN, ADMIN),
    "modality-edit": (ADMIN, ADMIN),
    "modality-delete": (None, ADMIN),
    "modality-echo": (None, ADMIN),
    "peer-new": (ADMIN, ADMIN),
    "peer-edit": (ADMIN, ADMIN),
    "peer-delete": (None, ADMIN),
    "peer-test": (None, ADMIN),
    "audit": (ADMIN, None),  # who read which patient's data: for administrators
    "tokens": (ADMIN, ADMIN),
    "token-revoke": (None, ADMIN),
    "not-found": (VIEWER, VIEWER),  # any other address under /ui/: a 404 page once signed in
}


def console_roles(route_name):
    """{"GET": role, "POST": role} of a console route."""
    get, post = CONSOLE_ROUTES.get(route_name, CONSOLE_PAGE)
    return {"GET": get, "POST": post}


def required_role(method, path):
    if path.startswith(ADMIN_READS):
        return ADMIN
    if method in ("GET", "HEAD", "OPTIONS"):
        return VIEWER
    if method == "POST" and (path in READ_POSTS or READ_POST_PATTERN.match(path)):
        return VIEWER
    if (method, path) in STORE_ROUTES or (method == "POST" and path.startswith(STORE_PREFIXES)):
        return UPLOADER
    return ADMIN


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


class AccessMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.csrf = CsrfViewMiddleware(get_response)

    def __call__(self, request):
        path = request.path_info
        if path in OPEN_PATHS or path == "/" or path.startswith(SESSION_PREFIXES) or \
                (path == "/metrics" and settings.METRICS_PUBLIC):
            return self.get_response(request)

        user = None
        actor_kind = "user"
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header.lower().startswith("basic "):
            user = basic_user(header[6:].strip(), request)
            if user is None:
                return unauthorized("invalid user name or password")
            if user is LOCKED:
                response = JsonResponse({"HttpError": "Too Many Requests", "HttpStatus": 429,
                                         "Message": "too many failed logins: try again later"}, status=429)
                response["Retry-After"] = str(throttle.WINDOW)
                return response
        elif header.lower().startswith("bearer "):
            user = tokens.user_of(header[7:].strip())
            if user is None:
                return unauthorized("invalid or revoked API token")
            actor_kind = "token"
        elif request.user.is_authenticated:
            user = request.user
            # A browser session carries cookies: its writes must prove they
            # come from our own pages.
            if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
                rejected = self.csrf.process_view(request, None, (), {})
                if rejected is not None:
                    return rejected
        if user is None:
            return unauthorized("authentication required")

        role = required_role(request.method, path)
        if not has_role(user, role):
            return JsonResponse(
                {"HttpError": "Forbidden", "HttpStatus": 403, "Message": f"the {role} role is required",
                 "Method": request.method, "Uri": path},
                status=403,
            )
        request.user = user
        # Scripts (Basic, token) send no CSRF token; a session's write was checked above.
        request._dont_enforce_csrf_checks = True
        response = self.get_response(request)
        audit.record_request(request, response, actor_kind, getattr(user, "api_token_name", user.username))
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        """The console's roles, once its route is known (CONSOLE_ROUTES)."""
        if not request.path_info.startswith("/ui/"):
            return None
        from console import access as console  # noqa: PLC0415 (the console builds on this module)

        match = request.resolver_match
        roles = console_roles(match.url_name if match else None)
        method = "GET" if request.method == "HEAD" else request.method
        role = roles.get(method)
        # The form a refusal takes: the console's views say what they answer.
        kind = getattr(view_func, "console_kind", console.PAGE)
        if role == OPEN:
            return None
        if role is None:
            return console.not_allowed(request, [m for m, r in roles.items() if r], kind)
        if not request.user.is_authenticated:
            return console.sign_in(request, kind)
        if not has_role(request.user, role):
            return console.refused(request, role, kind)
        return None


LOCKED = object()


def basic_user(token, request=None):
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    if not sep:
        return None
    fingerprint = hashlib.sha256(decoded.encode("utf-8")).hexdigest()
    now = time.monotonic()
    with _cache_lock:
        cached = _credential_cache.get(fingerprint)
    if cached and cached[1] > now:
        return cached[0]
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    if throttle.locked_for(username, address):
        return LOCKED
    user = authenticate(request, username=username, password=password)
    if user is None:
        with _cache_lock:
            _credential_cache.pop(fingerprint, None)
        return None
    with _cache_lock:
        if len(_credential_cache) > 1000:
            _credential_cache.clear()
        _credential_cache[fingerprint] = (user, now + CREDENTIAL_CACHE_SECONDS)
    return user


def unauthorized(message):
    response = JsonResponse({"HttpError": "Unauthorized", "HttpStatus": 401, "Message": message}, status=401)
    response["WWW-Authenticate"] = 'Basic realm="pacsweb"'
    return response
