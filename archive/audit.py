"""The audit trail: who (a user, a token, or a DICOM peer) did what to which resource.

HTTP requests are recorded by the access middleware once they are answered,
DICOM operations by the listener's handlers. Only what touches patient data or
the configuration is recorded: stores, reads, queries, exports, sends,
deletions, configuration changes. A failure to write the trail is logged and
never fails the operation it describes.
"""

import datetime
import logging
import re

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from archive.models import AuditEvent

log = logging.getLogger("pacsweb.audit")

RESOURCE = re.compile(r"^/(patients|studies|series|instances)/([^/]+)")
LEVELS = {"patients": "Patient", "studies": "Study", "series": "Series", "instances": "Instance"}
DICOMWEB_UID = re.compile(r"^/dicom-web/studies/([0-9.]+)")
# Uploads of instances: the ingest path writes a store row per instance (see
# ingest.Origin), so the request gets a row of its own only when it failed.
STORED_BY_INGEST = re.compile(r"^/instances$|^/dicom-web/studies(/[^/]+)?$")
# (method, path pattern) → action; the first match wins. What matches nothing
# (probes, the job list, the registry...) holds no patient data and is not recorded.
RULES = [
    ("POST", re.compile(r"^/instances$|^/dicom-web/studies(/[^/]+)?$"), "store"),
    ("DELETE", re.compile(r"^/(patients|studies|series|instances)/"), "delete"),
    ("*", re.compile(r"/archive$|/media$|^/tools/create-(archive|media)"), "export"),
    ("POST", re.compile(r"^/(modalities|peers)/[^/]+/store$"), "send"),
    ("POST", re.compile(r"^/modalities/[^/]+/(move|query)$|^/queries/.*/retrieve$"), "retrieve"),
    ("PUT", re.compile(r"^/(modalities|peers)/"), "configure"),
    ("DELETE", re.compile(r"^/(modalities|peers|tokens)/"), "configure"),
    ("POST", re.compile(r"^/cluster/nodes/[^/]+/(drain|undrain)$|^/tokens$|^/jobs/[^/]+/"), "configure"),
    ("PUT", re.compile(r"/(metadata|attachments)/"), "annotate"),
    ("DELETE", re.compile(r"/(metadata|attachments)/"), "annotate"),
    ("POST", re.compile(r"^/tools/find$"), "query"),
    # The worklist holds patients' orders: who scheduled, cancelled and read them.
    ("POST", re.compile(r"^/worklists$"), "store"),
    ("DELETE", re.compile(r"^/worklists/"), "delete"),
    ("GET", re.compile(r"^/worklists$"), "query"),
    ("GET", re.compile(r"^/worklists/"), "read"),
    ("GET", re.compile(r"^/dicom-web/(studies|series|instances)$|^/(patients|studies|series|instances)$"), "query"),
    ("GET", re.compile(r"^/(patients|studies|series|instances)/|^/dicom-web/|^/wado$"), "read"),
]


def action_of(method, path):
    for rule_method, pattern, action in RULES:
        if rule_method in ("*", method) and pattern.search(path):
            return action
    return None


def record_request(request, response, actor_kind, actor):
    """Record an answered HTTP request if it touched patient data or the configuration."""
    path = request.path_info
    action = action_of(request.method, path)
    if action is None:
        return
    if action == "store" and response.status_code == 200 and STORED_BY_INGEST.search(path):
        # Every instance it stored has its row already, committed with the instance.
        return
    level = resource = ""
    match = RESOURCE.match(path)
    if match:
        level, resource = LEVELS[match.group(1)], match.group(2)
    elif (uid := DICOMWEB_UID.match(path)) is not None:
        level, resource = "Study", uid.group(1)
    details = {}
    if request.GET:
        details["query"] = {k: v[:200] for k, v in list(request.GET.items())[:20]}
    if action == "store" and response.get("Content-Type", "").startswith("application/json") \
            and not getattr(response, "streaming", False) and len(response.content) < 65536:
        details["answer"] = response.content.decode("utf-8", "replace")[:2000]
    record(actor_kind, actor, action, address=request.META.get("REMOTE_ADDR", ""), method=request.method,
           path=path[:500], status=response.status_code, level=level, resource=resource, details=details)


def record(actor_kind, actor, action, address="", method="", path="", status=None, level="", resource="",
           details=None):
    try:
        AuditEvent.objects.create(at=timezone.now(), actor_kind=actor_kind, actor=str(actor)[:160],
                                  address=address or "", action=action, method=method, path=path, status=status,
                                  level=level, resource=str(resource)[:128], details=details or {},
                                  node=settings.NODE_NAME)
    except Exception as error:  # the trail must not fail the operation it describes
        log.error("audit event not written (%s %s %s): %s", actor, action, resource, error)


# Filters of the trail, by the name a query string uses (GET /audit, the console's page).
FILTERS = {"actor": "actor", "action": "action", "resource": "resource", "level": "level",
           "kind": "actor_kind", "node": "node"}
ACTOR_KINDS = ("user", "token", "ae")  # a signed-in user or HTTP Basic, an API token, a DICOM peer
ACTIONS = ("store", "read", "query", "export", "send", "retrieve", "delete", "annotate", "configure")


def events(filters, since=None, until=None):
    """The trail, newest first, narrowed by `filters` ({FILTERS name: value}; empty values
    ignored) and by the half-open time range [since, until)."""
    rows = AuditEvent.objects.order_by("-at", "-id")
    for parameter, field in FILTERS.items():
        if filters.get(parameter):
            rows = rows.filter(**{field: filters[parameter]})
    if since:
        rows = rows.filter(at__gte=since)
    if until:
        rows = rows.filter(at__lt=until)
    return rows


def moment(text, name):
    """An ISO 8601 date or date-time (UTC when it names no zone), None for None; ValueError
    naming the parameter `name` otherwise."""
    if text is None:
        return None
    when = parse_datetime(text) or (parse_datetime(text + "T00:00:00") if len(text) == 10 else None)
    if when is None:
        raise ValueError(f"{name} must be an ISO 8601 date or date-time, not {text!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when
