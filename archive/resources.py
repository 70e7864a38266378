"""Selectors: resources as Orthanc's REST API shows them, in a constant number of queries.

Orthanc answers GET /studies/{id} with six SQL round trips; here a resource costs
two queries (the row with its parents, the ids of its children) and a list of N
resources three, whatever N.
"""

import datetime

from django.db.models import Prefetch

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


def describe(level, row, file=None, labels=None):
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
    child_rows = list(getattr(row, CHILDREN[level]).all())
    children = [child.public_id for child in child_rows]
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
        answer["Status"] = series_status(expected, [child.instance_number for child in child_rows])
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
