"""API tokens: bearer credentials for scripts, created and revoked by administrators.

A token reads `pacs_<prefix>_<secret>`; the prefix finds the row, the SHA-256 of
the secret is compared in constant time. The secret itself is shown once, at
creation, and stored nowhere.
"""

import hashlib
import hmac
import secrets

from django.utils import timezone

from archive.models import ApiToken

PREFIX_BYTES = 4  # 8 hex characters: enough to find the row, useless to guess
SCHEME = "pacs"


def _digest(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def create(user, name):
    """A new token of the user; returns (token string, ApiToken row)."""
    if not name or len(name) > 64:
        raise ValueError("a token needs a name of 1 to 64 characters")
    while True:
        prefix = secrets.token_hex(PREFIX_BYTES)
        if not ApiToken.objects.filter(prefix=prefix).exists():
            break
    secret = secrets.token_urlsafe(32)
    row = ApiToken.objects.create(user=user, name=name, prefix=prefix, digest=_digest(secret),
                                  created_at=timezone.now())
    return f"{SCHEME}_{prefix}_{secret}", row


def user_of(token):
    """The active user a token belongs to, or None (unknown, revoked, malformed)."""
    scheme, _, rest = token.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != SCHEME or not prefix or not secret:
        return None
    row = ApiToken.objects.select_related("user").filter(prefix=prefix, revoked_at__isnull=True).first()
    if row is None or not hmac.compare_digest(row.digest, _digest(secret)) or not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    row.user.api_token_name = f"{row.user.username}/{row.name} ({prefix})"
    return row.user


def revoke(prefix):
    """Revoke the token; False when no active token has that prefix."""
    return ApiToken.objects.filter(prefix=prefix, revoked_at__isnull=True).update(revoked_at=timezone.now()) == 1


def describe(row):
    return {"Prefix": row.prefix, "Name": row.name, "User": row.user.username,
            "Created": row.created_at.isoformat(), "LastUsed": row.last_used_at and row.last_used_at.isoformat(),
            "Revoked": row.revoked_at and row.revoked_at.isoformat()}
