"""Django's browser machinery (sessions, their CSRF cookie, the lazy session user,
flash messages), skipped for a request that brings its own credentials.

A script (curl, pyorthanc, a viewer with a token) authenticates every request with
an Authorization header, and the access middleware answers for it (pacsweb/access.py):
it never has a session, a CSRF cookie or a message to show. Loading that machinery
anyway was a sixth of Django's work on a small read. A browser's request, and any
request for the console's and the admin's pages, keeps all of it.

The classes stay subclasses of Django's, in MIDDLEWARE's places, so that Django's
own checks (the admin's) still find them.
"""

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.middleware.csrf import CsrfViewMiddleware

# Pages with their own login (the Django admin, the console) and their assets: a
# browser may send cached Basic credentials there too, and still uses its session.
SESSION_PREFIXES = ("/admin/", "/ui/", "/static/", "/ohif/")


def authenticates_itself(request):
    """Whether the request carries Basic or Bearer credentials for a path outside the pages."""
    header = request.META.get("HTTP_AUTHORIZATION", "")[:7].lower()
    return header.startswith(("basic ", "bearer ")) and not request.path_info.startswith(SESSION_PREFIXES)


class _BrowsersOnly:
    def __call__(self, request):
        if authenticates_itself(request):
            return self.get_response(request)
        return super().__call__(request)


class BrowserSessionMiddleware(_BrowsersOnly, SessionMiddleware):
    pass


class BrowserCsrfMiddleware(_BrowsersOnly, CsrfViewMiddleware):
    """Its view check still runs for every request (Django calls process_view by
    itself): the access middleware exempts a script's request from it."""


class BrowserAuthenticationMiddleware(_BrowsersOnly, AuthenticationMiddleware):
    pass


class BrowserMessageMiddleware(_BrowsersOnly, MessageMiddleware):
    pass
