"""Browsers are not a confused deputy: the rules for requests a browser could send
with credentials it holds on its own (its session cookie, or HTTP Basic credentials
it cached after a 401 prompt), the Content-Security-Policy of the console, and the
Host header.

The write rule. A state-changing request (any method but GET, HEAD, OPTIONS,
TRACE) authenticated by HTTP Basic is refused when it says it comes from another
site: `Sec-Fetch-Site` is `cross-site` or `same-site`, or an `Origin` names
another origin than the one it was sent to. Browsers always send those headers
on such requests and a page cannot remove them; scripts (curl -u, Orthanc
clients, dicomweb-client) send neither, and keep working unchanged. API tokens
(`Authorization: Bearer`) are never sent by a browser on its own and need no
rule; console sessions keep Django's CSRF token (pacsweb/access.py).

The Host rule. With ALLOWED_HOSTS unset, the web server answers for the names
and addresses of this machine only (localhost, its host name, the host of
PACS_NODE_URL, any address it has): a page on a name an attacker controls that
resolves to this machine (DNS rebinding) gets 400. A node behind a load balancer
that clients reach by another name lists that name in ALLOWED_HOSTS.
"""

import ipaddress
import socket
from urllib.parse import urlparse

from django.conf import settings
from django.http import JsonResponse
from django.http.request import split_domain_port

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")
FOREIGN_FETCH_SITES = ("cross-site", "same-site")

# The console: its own scripts and styles only, no plugins, never framed. Inline
# style attributes (progress bars) stay allowed; 'unsafe-eval' is what htmx needs
# for the hx-on handlers of the console's templates (inline <script> and on*=
# attributes are still refused).
CONSOLE_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
                  "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
                  "form-action 'self'; frame-ancestors 'none'")


def foreign_origin(request):
    """Why the request comes from another site than this one, or None."""
    fetch_site = request.META.get("HTTP_SEC_FETCH_SITE", "").lower()
    if fetch_site in FOREIGN_FETCH_SITES:
        return f"Sec-Fetch-Site is {fetch_site}"
    origin = request.META.get("HTTP_ORIGIN")
    if origin is None:
        return None
    if origin == "null":
        return "Origin is null (a sandboxed or local page)"
    ours = f"{request.scheme}://{request.get_host()}"
    if origin.rstrip("/").lower() != ours.lower():
        return f"Origin {origin} is not {ours}"
    return None


def refuse_ambient_write(request):
    """The 403 for a Basic-authenticated write that a browser sent for another site, or None."""
    if request.method in SAFE_METHODS:
        return None
    reason = foreign_origin(request)
    if reason is None:
        return None
    return JsonResponse({
        "HttpError": "Forbidden", "HttpStatus": 403, "Message": "cross-site request refused",
        "Details": f"a write with HTTP Basic credentials from another site is refused ({reason}): a browser "
                   "sends cached credentials on its own. Scripts send no Origin or Sec-Fetch-Site; pages "
                   "of other sites can use an API token (Authorization: Bearer).",
        "Method": request.method, "Uri": request.path}, status=403)


class BrowserPolicyMiddleware:
    """The Host rule before anything else; the console's Content-Security-Policy."""

    def __init__(self, get_response):
        self.get_response = get_response
        self._local = {}

    def __call__(self, request):
        if settings.HOSTS_OF_THIS_MACHINE and "HTTP_HOST" in request.META:
            host, _ = split_domain_port(request.META["HTTP_HOST"])
            if not (host in settings.ALLOWED_HOSTS or self._is_this_machine(host)):
                return JsonResponse({
                    "HttpError": "Bad Request", "HttpStatus": 400, "Message": "unknown host",
                    "Details": f"this server does not answer for the host {host!r}: list it in ALLOWED_HOSTS",
                    "Method": request.method, "Uri": request.path}, status=400)
        response = self.get_response(request)
        if request.path_info.startswith("/ui/") and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = CONSOLE_POLICY
        return response

    def _is_this_machine(self, host):
        host = host.strip("[]").lower()
        if host in self._local:
            return self._local[host]
        local = _names_of_this_machine(host) or _address_of_this_machine(host)
        if len(self._local) < 1024:  # what a flood of made-up names cannot grow past
            self._local[host] = local
        return local


def _names_of_this_machine(host):
    names = {"localhost", socket.gethostname().lower(), socket.getfqdn().lower(),
             (urlparse(settings.NODE_URL).hostname or "").lower()}
    return host in names or host.endswith(".localhost")


def _address_of_this_machine(host):
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.is_loopback:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))  # only an address of one of our interfaces binds
        return True
    except OSError:
        return False
