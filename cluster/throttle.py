"""Login throttling, cluster-wide: repeated failed logins lock a user name for the
client that failed (and a client that fails under many names), for a while,
whichever node they hit.

Never the account alone: 50 bad logins under random names locked every account,
the administrator's right password included, and behind HAProxy every client
shared the address. A lock is keyed on the pair (user name, client address) and
on the client address, so whoever logs in correctly from elsewhere is never
refused; the client address is the real one behind a trusted proxy
(pacsweb/clients.py). Guessing one password from many addresses is bounded per
address instead (PACS_LOGIN_FAILURES per address and window).

Counters live in Redis with an expiry; when Redis is away nothing is throttled
(the password check still runs), rather than locking everybody out.
"""

import logging

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from archive.roles import active_user
from cluster.jobs import redis_connection

log = logging.getLogger("pacsweb.access")

WINDOW = 300  # seconds a lock lasts after the last failure
ADDRESS_FACTOR = 5  # an address may fail for this many user names before it is locked


def _keys(username, address):
    prefix = f"{settings.QUEUE_PREFIX}:login-failures"
    return [(f"{prefix}:pair:{address}:{username}", settings.LOGIN_FAILURES),
            (f"{prefix}:addr:{address}", settings.LOGIN_FAILURES * ADDRESS_FACTOR)]


def _redis():
    return redis_connection()


def locked_for(username, address=""):
    """Seconds the user name stays locked for this client (or the client for every
    name); 0 when it may try."""
    try:
        connection = _redis()
        for key, limit in _keys(username, address):
            count = connection.get(key)
            if count is not None and int(count) >= limit:
                return max(1, connection.ttl(key))
    except Exception as error:
        log.debug("login throttle unavailable: %s", error)
    return 0


def failed(username, address=""):
    try:
        pipe = _redis().pipeline()
        for key, _ in _keys(username, address):
            pipe.incr(key)
            pipe.expire(key, WINDOW)
        pipe.execute()
    except Exception as error:
        log.debug("login failure not counted: %s", error)


class ThrottledModelBackend(ModelBackend):
    """Django's password check, refused while the user name is locked for the client and
    counting failures: the console's login form and HTTP Basic both go through it."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
        if username and locked_for(username, address):
            raise PermissionDenied("too many failed logins")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None and username:
            failed(username, address)
            log.warning("failed login for %r from %s", username, address or "?")
        return user

    def get_user(self, user_id):
        """A signed-in browser's user, with its groups, in one query
        (archive.roles.active_user): every request of its session reads it (each of
        the hundreds a viewer sends for one study), and the role check then needs no
        query of its own. None for an account disabled or gone, as Django's own."""
        return active_user(user_id)
