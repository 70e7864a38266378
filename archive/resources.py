"""Selectors: resources as Orthanc's REST API shows them, in a constant number of queries.

Orthanc answers GET /studies/{id} with six SQL round trips; here a resource costs
two queries (the row with its parents, the ids of its children) and a list of N
resources three, whatever N.
"""

import datetime
import json
from dataclasses import dataclass
from types import SimpleNamespace

from django.db import connection
from django.db.models import OuterRef, Prefetch, Subquery

from archive import db, roles
from archive.models import Attachment, Instance, Label, Level, Patient, Series, Study

MODELS = {Level.PATIENT: Patient, Level.STUDY: Study, Level.SERIES: Series, Level.INSTANCE: Instance}
PLURAL = {Level.PATIENT: "patients", Level.STUDY: "studies", Level.SERIES: "series", Level.INSTANCE: "instances"}
LEVEL_OF_PLURAL = {plural: level for level, plural in PLURAL.items()}
PARENT = {Level.STUDY: "patient", Level.SERIES: "study", Level.INSTANCE: "series"}
CHILDREN = {Level.PATIENT: "studies", Level.STUDY: "series", Level.SERIES: "instances"}
CHILD_LEVEL = {Level.PATIENT: Level.STUDY, Level.STUDY: Level.SERIES, Level.SERIES: Level.INSTANCE}
ORDER = [Level.PATIENT, Level.STUDY, Level.SERIES, Level.INSTANCE]
# How a row of `level` reaches its ancestor at another level.
ANCESTOR_PATH = {
    Level.STUDY: {Level.PATIENT: "patient"},
    Level.SERIES: {Level.STUDY: "study", Level.PATIENT: "study__patient"},
    Level.INSTANCE: {Level.SERIES: "series", Level.STUDY: "series__study", Level.PATIENT: "series__study__patient"},
}
# How rows of `level` are filtered by an ancestor's primary key.
BY_ANCESTOR = {
    Level.STUDY: {Level.PATIENT: "patient_id"},
    Level.SERIES: {Level.STUDY: "study_id", Level.PATIENT: "study__patient_id"},
    Level.INSTANCE: {Level.SERIES: "series_id", Level.STUDY: "series__study_id", Level.PATIENT: "series__study__patient_id"},
}


def orthanc_time(moment):
    """Orthanc's timestamps: YYYYMMDDTHHMMSS in UTC."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")


def queryset(level):
    """Rows of a level with what their description needs, in two queries."""
    model = MODELS[level]
    rows = model.objects.all()
    if level in PARENT:
        rows = rows.select_related(PARENT[level])
    if level in CHILDREN:
        child_model = MODELS[CHILD_LEVEL[level]]
        fields = ["pk", "public_id", PARENT[CHILD_LEVEL[level]] + "_id"]
        if level == Level.SERIES:
            fields.append("instance_number")  # the series' Status counts them
        rows = rows.prefetch_related(
            Prefetch(CHILDREN[level], queryset=child_model.objects.order_by("pk").only(*fields))
        )
    return rows.order_by("pk")


def get(level, public_id):
    """The row of a resource, ready for describe(), or None."""
    return queryset(level).filter(public_id=public_id).first()


# describe_by_id()'s statements. A read of one resource is the commonest request
# a viewer sends; through the ORM its three queries cost ~1 ms of CPU to build and
# convert (0.3-0.7 ms each, measured), as plain SQL ~0.1 ms each. The columns are
# those describe() reads; portable SQL (SQLite and PostgreSQL).
_ROW = {
    Level.PATIENT: "SELECT r.id, r.public_id, r.is_stable, r.last_update, r.main_dicom_tags FROM patient r "
                   "WHERE r.public_id = %s",
    Level.STUDY: "SELECT r.id, r.public_id, r.is_stable, r.last_update, r.main_dicom_tags, p.public_id, "
                 "p.main_dicom_tags FROM study r JOIN patient p ON p.id = r.patient_id WHERE r.public_id = %s",
    Level.SERIES: "SELECT r.id, r.public_id, r.is_stable, r.last_update, r.main_dicom_tags, p.public_id "
                  "FROM series r JOIN study p ON p.id = r.study_id WHERE r.public_id = %s",
    Level.INSTANCE: "SELECT r.id, r.public_id, r.is_stable, r.last_update, r.main_dicom_tags, p.public_id, "
                    "r.instance_number, a.size, a.storage_key FROM instance r JOIN series p ON p.id = r.series_id "
                    "LEFT JOIN attachment a ON a.resource_id = r.public_id AND a.name = %s WHERE r.public_id = %s",
}
# The children's ids in creation order (0) and the labels (1), in one round trip.
_LABELS = "SELECT 1, id, name, NULL FROM label WHERE resource_id = %s"
_CHILDREN_AND_LABELS = {
    Level.PATIENT: "SELECT 0, id, public_id, NULL FROM study WHERE patient_id = %s UNION ALL " + _LABELS,
    Level.STUDY: "SELECT 0, id, public_id, NULL FROM series WHERE study_id = %s UNION ALL " + _LABELS,
    Level.SERIES: "SELECT 0, id, public_id, instance_number FROM instance WHERE series_id = %s UNION ALL " + _LABELS,
}


def _checking(sql, credentials):
    """`sql` (SELECT ... FROM ...) with one more column, last, that says whether a
    request's remembered `credentials` still hold (roles.credentials_hold), and the
    parameters that column adds in front; `sql` as it is without credentials."""
    if credentials is None:
        return sql, []
    key = (sql, credentials.role, connection.vendor)
    if key not in _CHECKING:
        columns, start, rest = sql.partition(" FROM ")
        _CHECKING[key] = f"{columns}, {roles.credentials_hold(credentials.role)}{start}{rest}"
    return _CHECKING[key], [credentials.user_id, credentials.password]


_CHECKING = {}


def describe_by_id(level, public_id, credentials=None):
    """describe(level, get(level, public_id)), in two plain queries; None when there is no such resource.

    With a request's remembered `credentials` (roles.Credentials), the first query
    checks them too: raises CredentialsRefused when they no longer hold. A read of
    one resource is then two queries, not three (and on PostgreSQL two round trips)."""
    sql, params = _checking(_ROW[level], credentials)
    params += [Attachment.DICOM, public_id] if level == Level.INSTANCE else [public_id]
    with db.statements() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchone()
        if found is None:
            return None
        if credentials is not None:
            credentials.settle(bool(found[-1]))
        if level in _CHILDREN_AND_LABELS:
            cursor.execute(_CHILDREN_AND_LABELS[level] + " ORDER BY 1, 2", [found[0], public_id])
        else:
            cursor.execute(_LABELS, [public_id])
        rows = cursor.fetchall()
    row = SimpleNamespace(pk=found[0], public_id=found[1], is_stable=bool(found[2]), last_update=db.datetime_value(found[3]),
                          main_dicom_tags=_json(found[4]))
    labels = sorted(name for kind, _, name, _ in rows if kind == 1)
    children = [(child_id, number) for kind, _, child_id, number in rows if kind == 0]
    file = None
    if level == Level.STUDY:
        row.patient = SimpleNamespace(public_id=found[5], main_dicom_tags=_json(found[6]))
    elif level == Level.SERIES:
        row.study = SimpleNamespace(public_id=found[5])
    elif level == Level.INSTANCE:
        row.series = SimpleNamespace(public_id=found[5])
        row.instance_number = found[6]
        file = {} if found[7] is None else {"size": found[7], "storage_key": found[8]}
    return describe(level, row, file, labels, children)


def dicom_file(instance_id, credentials=None):
    """{"storage_key", "size", "md5"} of an instance's DICOM file, or None (one plain query,
    which checks a request's remembered `credentials` too, as describe_by_id())."""
    sql, params = _checking("SELECT storage_key, size, md5 FROM attachment WHERE resource_id = %s AND name = %s",
                            credentials)
    with db.statements() as cursor:
        cursor.execute(sql, params + [instance_id, Attachment.DICOM])
        found = cursor.fetchone()
    if found is None:
        return None
    if credentials is not None:
        credentials.settle(bool(found[-1]))
    return {"storage_key": found[0], "size": found[1], "md5": found[2]}


def _json(value):
    # PostgreSQL's jsonb arrives as text through Django's psycopg set-up, SQLite's as text.
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def describe_many(level, rows):
    """Orthanc's description of each row (one extra query for the labels, one for instance files)."""
    rows = list(rows)
    labels = labels_by_resource(row.public_id for row in rows) if rows else {}
    files = {}
    if level == Level.INSTANCE and rows:
        files = {
            a["resource_id"]: a
            for a in Attachment.objects.filter(resource_id__in=[r.public_id for r in rows], name=Attachment.DICOM)
            .values("resource_id", "size", "storage_key")
        }
    return [describe(level, row, files.get(row.public_id), labels.get(row.public_id, [])) for row in rows]


def labels_by_resource(public_ids):
    """{public id: sorted labels} for many resources, in one query."""
    found = {}
    for resource_id, name in Label.objects.filter(resource_id__in=list(public_ids)).values_list("resource_id", "name"):
        found.setdefault(resource_id, []).append(name)
    return {key: sorted(names) for key, names in found.items()}


def describe(level, row, file=None, labels=None, children=None):
    """Orthanc's description of a resource; `children` ([(public id, instance number)])
    when they were read with the row, else they come from queryset()'s prefetch."""
    if labels is None:
        labels = labels_by_resource([row.public_id]).get(row.public_id, [])
    if level == Level.INSTANCE:
        if file is None:
            file = Attachment.objects.filter(resource_id=row.public_id, name=Attachment.DICOM).values(
                "size", "storage_key").first() or {}
        return {
            "FileSize": file.get("size", 0),
            "FileUuid": uuid_form(file.get("storage_key", "")),
            "ID": row.public_id,
            "IndexInSeries": row.instance_number,
            "Labels": labels,
            "MainDicomTags": row.main_dicom_tags,
            "ParentSeries": row.series.public_id,
            "Type": "Instance",
        }
    answer = {
        "ID": row.public_id,
        "IsStable": row.is_stable,
        "Labels": labels,
        "LastUpdate": orthanc_time(row.last_update),
        "MainDicomTags": row.main_dicom_tags,
        "Type": level,
    }
    if children is None:
        children = [(child.public_id, getattr(child, "instance_number", None))
                    for child in getattr(row, CHILDREN[level]).all()]
    child_numbers = [number for _, number in children]
    children = [child_id for child_id, _ in children]
    if level == Level.PATIENT:
        answer["Studies"] = children
    elif level == Level.STUDY:
        answer["ParentPatient"] = row.patient.public_id
        answer["PatientMainDicomTags"] = row.patient.main_dicom_tags
        answer["Series"] = children
    elif level == Level.SERIES:
        expected = expected_instances(row.main_dicom_tags)
        answer["ExpectedNumberOfInstances"] = expected
        answer["Instances"] = children
        answer["ParentStudy"] = row.study.public_id
        answer["Status"] = series_status(expected, child_numbers)
    return answer


def expected_instances(series_tags):
    """How many instances a series announces (Orthanc's ExpectedNumberOfInstances), or None.

    Orthanc's rule: ImagesInAcquisition times NumberOfTemporalPositions when both are
    given, else NumberOfSlices, else CardiacNumberOfImages; the first rule that applies
    decides, and an unreadable or non-positive number means none.
    """
    def present(keyword):
        return series_tags.get(keyword) not in (None, "")

    if present("ImagesInAcquisition") and present("NumberOfTemporalPositions"):
        factors = ("ImagesInAcquisition", "NumberOfTemporalPositions")
    elif present("NumberOfSlices"):
        factors = ("NumberOfSlices",)
    elif present("CardiacNumberOfImages"):
        factors = ("CardiacNumberOfImages",)
    else:
        return None
    expected = 1
    for keyword in factors:
        text = str(series_tags[keyword]).strip()
        if not text.lstrip("+-").isdigit():
            return None
        expected *= int(text)
    return expected if expected > 0 else None


def series_status(expected, instance_numbers):
    """Orthanc's Status of a series: Complete when its instances are numbered 1 to the
    expected count, Missing when some are absent, Inconsistent when a number is out of
    range or repeated, Unknown when no count is announced. Instances without a number
    are not counted."""
    if expected is None:
        return "Unknown"
    seen = set()
    for number in instance_numbers:
        if number is None:
            continue
        if not 0 < number <= expected or number in seen:
            return "Inconsistent"
        seen.add(number)
    return "Complete" if len(seen) == expected else "Missing"


def descendants(level, row, child_level):
    """Rows of child_level under the resource (any depth), ready for describe_many()."""
    return queryset(child_level).filter(**{BY_ANCESTOR[child_level][level]: row.pk})


def ancestor(level, row, ancestor_level):
    """The row of the resource's ancestor at ancestor_level, ready for describe()."""
    ancestor_pk = MODELS[level].objects.filter(pk=row.pk).values_list(ANCESTOR_PATH[level][ancestor_level] + "__pk", flat=True)
    return queryset(ancestor_level).get(pk__in=ancestor_pk)


def uuid_form(key):
    """A storage key as Orthanc writes its file UUIDs (8-4-4-4-12)."""
    if len(key) != 32:
        return key
    return f"{key[:8]}-{key[8:12]}-{key[12:16]}-{key[16:20]}-{key[20:]}"


def instance_files(level, row):
    """(instance public id, storage key of its DICOM file) of each instance of
    the resource, in the order of the instances' creation (one query)."""
    instances = Instance.objects.filter(pk=row.pk) if level == Level.INSTANCE else \
        Instance.objects.filter(**{BY_ANCESTOR[Level.INSTANCE][level]: row.pk})
    keys = dict(Attachment.objects.filter(resource_id__in=instances.values("public_id"), name=Attachment.DICOM)
                .values_list("resource_id", "storage_key"))
    for public_id in instances.order_by("pk").values_list("public_id", flat=True):
        if public_id in keys:
            yield public_id, keys[public_id]


@dataclass(frozen=True)
class StoredInstance:
    public_id: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    storage_key: str


def stored_instances(study, series=None, instance=None, credentials=None):
    """The stored instances under the UIDs, in series then instance number order, in one query
    (which checks a request's remembered `credentials` too, as describe_by_id())."""
    rows = Instance.objects.filter(series__study__study_instance_uid=study)
    if series:
        rows = rows.filter(series__series_instance_uid=series)
    if instance:
        rows = rows.filter(sop_instance_uid=instance)
    files = Attachment.objects.filter(resource_id=OuterRef("public_id"), name=Attachment.DICOM)
    columns = ["public_id", "series__study__study_instance_uid", "series__series_instance_uid",
               "sop_instance_uid", "transfer_syntax_uid", "storage_key"]
    rows = rows.annotate(storage_key=Subquery(files.values("storage_key")[:1]))
    if credentials is not None:
        rows = rows.annotate(credentials_hold=roles.credentials_column(credentials))
        columns.append("credentials_hold")
    found = list(rows.filter(storage_key__isnull=False).order_by("series_id", "instance_number", "pk")
                 .values_list(*columns))
    if credentials is not None and found:
        credentials.settle(bool(found[0][-1]))
        found = [row[:-1] for row in found]
    return [StoredInstance(*row) for row in found]
