"""Who did what (the audit trail) and the API tokens of scripts."""

from django.db import models


class AuditEvent(models.Model):
    """Who did what to which resource, and when. Written by the access layer (HTTP)
    and the DICOM listener; no API route changes or deletes a row."""

    at = models.DateTimeField(db_index=True)
    # "user", "token" or "ae" (a DICOM peer, named by its calling AE title).
    actor_kind = models.CharField(max_length=8)
    actor = models.CharField(max_length=160, db_index=True)
    address = models.CharField(max_length=45, blank=True)
    action = models.CharField(max_length=16, db_index=True)
    method = models.CharField(max_length=16, blank=True)
    path = models.CharField(max_length=500, blank=True)
    status = models.IntegerField(null=True)
    level = models.CharField(max_length=8, blank=True)
    resource = models.CharField(max_length=128, blank=True, db_index=True)
    details = models.JSONField(default=dict)
    node = models.CharField(max_length=128, blank=True)

    class Meta:
        db_table = "audit_event"


class ApiToken(models.Model):
    """A bearer token of a user, for scripts: `Authorization: Bearer pacs_<prefix>_<secret>`.
    Only the SHA-256 of the secret is kept."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=12, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True)
    revoked_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "api_token"
