"""The audit trail: who (a user, a token, or a DICOM peer) did what to which resource.

HTTP requests are recorded by the access middleware once they are answered,
DICOM operations by the listener's handlers. Only what touches patient data or
the configuration is recorded: stores, reads, queries, exports, sends,
deletions, configuration changes. A failure to write the trail is logged and
never fails the operation it describes.

The trail is for people to read. A read is recorded once per study (or patient)
per actor per PACS_AUDIT_READ_WINDOW: a viewer fetching 500 frames of a series
opens the study once, not 500 times. A row names what it is about (patient name
and ID, study date and description) in `details["subject"]`, written when the row
is: a deletion's subject (with its series and instance counts) is read before the
rows go. A configuration row names the modality or peer and the fields changed,
secrets masked.
"""

import datetime
import json
import logging
import re

from django.conf import settings
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from archive import batches, db
from archive.models import AuditEvent, Instance, Level, Modality, Peer, Series, Study

log = logging.getLogger("pacsweb.audit")

RESOURCE = re.compile(r"^/(patients|studies|series|instances)/([^/]+)")
LEVELS = {"patients": "Patient", "studies": "Study", "series": "Series", "instances": "Instance"}
DICOMWEB_UID = re.compile(r"^/dicom-web/studies/([0-9.]+)")
DICOM_UID = re.compile(r"^[0-9.]+$")
# Uploads of instances: the ingest path writes a store row per instance (see
# ingest.Origin), so the request gets a row of its own only when it failed.
STORED_BY_INGEST = re.compile(r"^/instances$|^/dicom-web/studies(/[^/]+)?$")
# (method, path pattern) → action; the first match wins. What matches nothing
# (probes, the job list, the registry...) holds no patient data and is not recorded.
RULES = [
    ("POST", re.compile(r"^/instances$|^/dicom-web/studies(/[^/]+)?$"), "store"),
    ("DELETE", re.compile(r"^/(patients|studies|series|instances)/"), "delete"),
    ("*", re.compile(r"/archive$|/media$|^/tools/create-(archive|media)"), "export"),
    ("POST", re.compile(r"^/(modalities|peers)/[^/]+/store(-straight)?$"), "send"),
    ("POST", re.compile(r"^/modalities/[^/]+/(move|query)$|^/queries/.*/(retrieve|query-[a-z]+)$"), "retrieve"),
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


CONFIGURED = re.compile(r"^/(modalities|peers)/([^/]+)/?$")
CONFIGURATION_MODELS = {"modalities": Modality, "peers": Peer}
# Fields whose values never reach the trail: that they changed is all it says.
SECRET_FIELDS = {"password", "http_headers"}


def before_request(request):
    """What a row must say that the request is about to change: a deletion's subject,
    the configuration a PUT or DELETE replaces. None when nothing is needed."""
    path = request.path_info
    action = action_of(request.method, path)
    try:
        if action == "delete" and (match := RESOURCE.match(path)) is not None:
            return {"subject": subject(LEVELS[match.group(1)], match.group(2), counts=True)}
        if action == "configure" and (match := CONFIGURED.match(path)) is not None:
            return {"configuration": configuration_of(match.group(1), match.group(2))}
    except Exception as error:  # the trail must not fail the operation it describes
        log.error("audit: cannot describe %s %s: %s", request.method, path, error)
    return None


def record_request(request, response, actor_kind, actor, before=None):
    """Record an answered HTTP request if it touched patient data or the configuration;
    `before` is what before_request() said."""
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
    elif path == "/wado" and DICOM_UID.match(request.GET.get("studyUID", "")):
        level, resource = "Study", request.GET["studyUID"]  # WADO-URI names its study in the query
    details = {}
    if before and "subject" in before and before["subject"]:
        details["subject"] = before["subject"]
    if before and "configuration" in before and (match := CONFIGURED.match(path)) is not None:
        details.update(configuration_change(match.group(1), match.group(2), before["configuration"]))
    if request.GET:
        details["query"] = {k: v[:200] for k, v in list(request.GET.items())[:20]}
    if action == "store" and response.get("Content-Type", "").startswith("application/json") \
            and not getattr(response, "streaming", False) and len(response.content) < 65536:
        details["answer"] = response.content.decode("utf-8", "replace")[:2000]
    record(actor_kind, actor, action, address=request.META.get("REMOTE_ADDR", ""), method=request.method,
           path=path[:500], status=response.status_code, level=level, resource=resource, details=details)


def record(actor_kind, actor, action, address="", method="", path="", status=None, level="", resource="",
           details=None):
    details = details or {}
    try:
        if action == "read" and level in (Level.SERIES, Level.INSTANCE) and resource and (status or 200) < 400:
            # A frame, a rendering, the tags of one instance: the reader opened its study.
            study = _study_of(level, resource)
            if study:
                level, resource = Level.STUDY, study
        elif action == "read" and level == Level.STUDY and DICOM_UID.match(str(resource)) and (status or 200) < 400:
            # DICOMweb names a study by its UID: the trail by its id, as the REST API
            # does, so that the row names its subject and the two APIs' reads are one.
            study = _study_of(Level.STUDY, resource)
            if study:
                resource = study
        if action == "read" and resource:
            if _read_recently(actor_kind, str(actor), level, str(resource)):
                return
            if level in (Level.PATIENT, Level.STUDY) and "subject" not in details:
                details["subject"] = subject(level, resource)
        at = timezone.now()
        _insert(at=at, actor_kind=actor_kind, actor=str(actor)[:160], address=address or "", action=action,
                method=method, path=path, status=status, level=level, resource=str(resource)[:128],
                details=details or {}, node=settings.NODE_NAME)
        if action == "read" and resource:
            key = _read_key(actor_kind, str(actor), level, str(resource))
            # Remembered once the row is committed (at once outside a transaction).
            transaction.on_commit(lambda: _remember(_recorded_reads, key, at))
    except Exception as error:  # the trail must not fail the operation it describes
        log.error("audit event not written (%s %s %s): %s", actor, action, resource, error)


# What this process knows to be in the trail, so that the reads of a study a viewer
# repeats within the window (its series, frames, thumbnails) cost no query:
# {(actor kind, actor, level, resource): the time of the read row}, and {series or
# instance public id, or a StudyInstanceUID: its study's public id}. A public id is a
# hash of the DICOM identifiers, so its study never changes; a UID's study may (its
# study deleted, the UID stored again under another patient), and a read row then names
# the study it had until the process forgets it. Both are bounded (emptied when full);
# an entry of the first only ever answers what the database would: a row newer than the
# window's start.
_recorded_reads = {}
_study_ids = {}
CACHE_LIMIT = 10000


def forget():
    """Empty this process's memory of the trail (a test's database is rolled back under it)."""
    _recorded_reads.clear()
    _study_ids.clear()
    _waiting.discard()


def _remember(cache, key, value):
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    cache[key] = value


_COLUMNS = ("at", "actor_kind", "actor", "address", "action", "method", "path", "status", "level", "resource",
            "details", "node")
_MARKERS = ", ".join(["%s"] * len(_COLUMNS))
_INSERT = f"INSERT INTO {AuditEvent._meta.db_table} ({', '.join(_COLUMNS)}) VALUES ({_MARKERS})"


def _insert(**row):
    """AuditEvent.objects.create(**row), in plain SQL: every search writes a row, and
    the ORM's insert cost ~0.3 ms of CPU more than the statement.

    The rows of reads and searches wait in this process for PACS_AUDIT_READ_DELAY
    seconds, to go with the others of that time in one statement (_waiting): a
    statement and a commit of their own were a tenth of a search's CPU. A crashed
    process loses at most those of its last PACS_AUDIT_READ_DELAY seconds; one that
    exits writes them first. Their commit is not synced (db.unsynced): on SQLite a
    power cut may also take back those of the last PACS_HOUSEKEEPER_INTERVAL seconds.
    Every other row is written at once, synced."""
    row["at"] = connection.ops.adapt_datetimefield_value(row["at"])
    row["details"] = json.dumps(row["details"])
    values = [row[column] for column in _COLUMNS]
    if row["action"] in UNSYNCED_ACTIONS:
        if settings.AUDIT_READ_DELAY > 0:
            with _waiting.adding() as rows:
                rows.append(values)
        else:
            _write([values])
        return
    with db.statements() as cursor:
        cursor.execute(_INSERT, values)


def _write(rows):
    with db.unsynced(), db.statements() as cursor:
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start:start + _ROWS_PER_INSERT]
            cursor.execute(_INSERT + f", ({_MARKERS})" * (len(chunk) - 1), [v for values in chunk for v in values])


def _write_waiting(rows):
    try:
        _write(rows)
    except Exception as error:  # the trail must not fail the operation it describes
        log.error("audit: %d rows of reads and searches not written: %s", len(rows), error)


# SQLite takes up to 32,766 values in a statement.
_ROWS_PER_INSERT = 500
# The flushing thread's connection goes back between two passes (to the pool, on PostgreSQL).
_waiting = batches.ProcessBatch("audit-flush", _write_waiting, lambda: settings.AUDIT_READ_DELAY,
                                rest=lambda: connection.close())


def flush():
    """Write the rows of reads and searches waiting in this process, now."""
    _waiting.flush()


UNSYNCED_ACTIONS = ("read", "query")


# Only the resource's index may serve it: "action || ''" and "actor || ''" cannot use
# theirs. SQLite, without statistics, chose the action's and read every read row of the
# trail at each first read of a study in a process (0.5 ms with 3,000, growing with the
# trail); with the resource's, 0.006 ms. The time's index neither: PostgreSQL walked it
# back from the newest row (max() as a LIMIT 1 over that index, which GROUP BY rules
# out) through every row of the window when no read matched, and a bound written
# "(...) IS TRUE" is none it can seek.
_LATEST_READ = (f"SELECT max(at) FROM {AuditEvent._meta.db_table} WHERE resource = %s AND action || '' = 'read' "
                f"AND actor_kind = %s AND actor || '' = %s AND level = %s AND (at >= %s) IS TRUE GROUP BY resource")
_STUDY_OF = {
    # By its StudyInstanceUID: the one study of that UID (two patients' studies may share one).
    Level.STUDY: f"SELECT min(public_id) FROM {Study._meta.db_table} WHERE study_instance_uid = %s "
                 f"HAVING count(*) = 1",
    Level.SERIES: f"SELECT st.public_id FROM {Series._meta.db_table} se "
                  f"JOIN {Study._meta.db_table} st ON st.id = se.study_id WHERE se.public_id = %s",
    Level.INSTANCE: f"SELECT st.public_id FROM {Instance._meta.db_table} i "
                    f"JOIN {Series._meta.db_table} se ON se.id = i.series_id "
                    f"JOIN {Study._meta.db_table} st ON st.id = se.study_id WHERE i.public_id = %s",
}


def _read_key(actor_kind, actor, level, resource):
    return actor_kind, actor[:160], level, resource[:128]


def _read_recently(actor_kind, actor, level, resource):
    """Whether this actor's read of this resource is in the trail within the window
    (this process's memory of the rows it wrote or found, else one indexed query: the
    resource column)."""
    window = settings.AUDIT_READ_WINDOW
    if window <= 0:
        return False
    since = timezone.now() - datetime.timedelta(seconds=window)
    key = _read_key(actor_kind, actor, level, resource)
    known = _recorded_reads.get(key)
    if known is not None and known >= since:
        return True
    with connection.cursor() as cursor:
        # Plain SQL: a viewer's first read of a study in this process asks it, and the
        # ORM's query building cost more than the query.
        cursor.execute(_LATEST_READ, [key[3], key[0], key[1], level, connection.ops.adapt_datetimefield_value(since)])
        row = cursor.fetchone()
    if row is None:
        return False
    _remember(_recorded_reads, key, db.datetime_value(row[0]))
    return True


def _study_of(level, public_id):
    study = _study_ids.get((level, public_id))
    if study is None:
        with connection.cursor() as cursor:
            cursor.execute(_STUDY_OF[level], [public_id])
            row = cursor.fetchone()
        study = row[0] if row else None
        if study is not None:
            _remember(_study_ids, (level, public_id), study)
    return study


# What a row says of the resource it is about, level by level from the resource up.
SUBJECT_KEYS = {Level.PATIENT: ("PatientName", "PatientID"),
                Level.STUDY: ("StudyDate", "StudyDescription", "AccessionNumber"),
                Level.SERIES: ("Modality", "SeriesDescription"), Level.INSTANCE: ("InstanceNumber",)}
UPWARDS = {Level.PATIENT: (Level.PATIENT,), Level.STUDY: (Level.STUDY, Level.PATIENT),
           Level.SERIES: (Level.SERIES, Level.STUDY, Level.PATIENT),
           Level.INSTANCE: (Level.INSTANCE, Level.SERIES, Level.STUDY, Level.PATIENT)}
# The resource's id and its tags and its ancestors', in one plain query: a reader's
# first view of a study writes its subject, and the ORM's query (built, then two
# models made) cost more than the rest of the read.
_SUBJECT = {
    Level.PATIENT: "SELECT r.id, r.main_dicom_tags FROM patient r WHERE r.public_id = %s",
    Level.STUDY: "SELECT r.id, r.main_dicom_tags, p.main_dicom_tags FROM study r "
                 "JOIN patient p ON p.id = r.patient_id WHERE r.public_id = %s",
    Level.SERIES: "SELECT r.id, r.main_dicom_tags, st.main_dicom_tags, p.main_dicom_tags FROM series r "
                  "JOIN study st ON st.id = r.study_id JOIN patient p ON p.id = st.patient_id WHERE r.public_id = %s",
    Level.INSTANCE: "SELECT r.id, r.main_dicom_tags, se.main_dicom_tags, st.main_dicom_tags, p.main_dicom_tags "
                    "FROM instance r JOIN series se ON se.id = r.series_id JOIN study st ON st.id = se.study_id "
                    "JOIN patient p ON p.id = st.patient_id WHERE r.public_id = %s",
}
SERIES_BELOW = {Level.PATIENT: "study__patient_id", Level.STUDY: "study_id", Level.SERIES: "pk"}


def subject(level, public_id, counts=False):
    """What a resource is about, in the words people search by: patient name and ID,
    study date and description (series description, instance number below), and with
    `counts` its series and instances (and studies of a patient). {} when it is not in
    the archive. One query, three or four with the counts."""
    if level not in _SUBJECT:
        return {}
    with db.statements() as cursor:
        cursor.execute(_SUBJECT[level], [public_id])
        row = cursor.fetchone()
    if row is None:
        return {}
    found = {}
    for each, tags in zip(UPWARDS[level], row[1:]):
        tags = json.loads(tags) if isinstance(tags, (str, bytes)) else tags
        found.update({key: tags[key] for key in SUBJECT_KEYS[each] if tags.get(key)})
    if counts:
        found.update(_counts(level, row[0]))
    return found


def _counts(level, pk):
    if level == Level.INSTANCE:
        return {"series": 1, "instances": 1}
    series = Series.objects.filter(**{SERIES_BELOW[level]: pk})
    found = {"series": series.count(), "instances": Instance.objects.filter(series__in=series).count()}
    if level == Level.PATIENT:
        found["studies"] = Study.objects.filter(patient_id=pk).count()
    return found


def configuration_of(kind, name):
    """The fields of a modality or peer ("modalities" / "peers") as configured, or None."""
    row = CONFIGURATION_MODELS[kind].objects.filter(name=name).first()
    return None if row is None else model_to_dict(row, exclude=["id", "updated_at"])


def configuration_change(kind, name, before, after=...):
    """A configuration row's details: the name, and each changed field as [old, new]
    (a secret as "(changed)"); `after` defaults to what is configured now."""
    if after is ...:
        after = configuration_of(kind, name)
    details = {"kind": {"modalities": "modality", "peers": "peer"}.get(kind, kind), "name": name}
    if before is None and after is None:
        return details
    if after is None:
        details["deleted"] = True
        return details
    if before is None:
        details["created"] = True
    changed = {}
    for field, value in after.items():
        old = (before or {}).get(field)
        if old != value:
            changed[field] = "(changed)" if field in SECRET_FIELDS else [old, value]
    details["changed"] = changed
    return details


# Filters of the trail, by the name a query string uses (GET /audit, the console's page).
FILTERS = {"actor": "actor", "action": "action", "resource": "resource", "level": "level",
           "kind": "actor_kind", "node": "node"}
ACTOR_KINDS = ("user", "token", "ae")  # a signed-in user or HTTP Basic, an API token, a DICOM peer
ACTIONS = ("store", "read", "query", "export", "send", "retrieve", "delete", "annotate", "configure", "modify",
           "anonymize")


def events(filters, since=None, until=None):
    """The trail, newest first, narrowed by `filters` ({FILTERS name: value}; empty values
    ignored) and by the half-open time range [since, until). The rows of reads and
    searches waiting in other processes are not in it yet (PACS_AUDIT_READ_DELAY)."""
    flush()
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
