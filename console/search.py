"""The console's sorted, paged searches: which columns each sort key means and
which keys a list shows. The search itself is archive.query.find_page, the
engine behind C-FIND, QIDO-RS and /tools/find.
"""

from django.db.models import Count

from archive import query
from archive.models import Instance, Level, Patient, Series, Study

PAGE_SIZE = 25

# Sort keys the pages offer → the columns they order by (a "-" prefix reverses).
STUDY_SORTS = {
    "date": ("study_date", "main_dicom_tags__StudyTime"),
    "patient": ("patient__patient_name_norm",),
    "pid": ("patient__patient_id_norm",),
    "accession": ("accession_number_norm",),
    "description": ("study_description_norm",),
    "received": ("created_at",),
}
PATIENT_SORTS = {
    "name": ("patient_name_norm",),
    "pid": ("patient_id_norm",),
    "birth": ("patient_birth_date",),
    "updated": ("last_update",),
}
STUDY_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
              "StudyDescription", "AccessionNumber", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances")
PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies")


def order_columns(sorts, sort, default):
    """The ORDER BY columns of a sort key such as "-date" (unknown keys: the default)."""
    descending = sort.startswith("-")
    columns = sorts.get(sort.lstrip("-"))
    if columns is None:
        return order_columns(sorts, default, default)
    return [("-" + c) if descending else c for c in columns]


def find(level, criteria, order, page=1, size=PAGE_SIZE, return_keys=(), labels=()):
    """A query.Page of the matches of the criteria (DICOM matching keys → strings) that
    carry every label of `labels`, in `order` (columns), page `page` (from 1). Raises
    query.InvalidQuery."""
    return query.find_page(query.Query(level=level, criteria=criteria, order=tuple(order), labels=tuple(labels)),
                           return_keys, page, size)


def studies(criteria, sort="-date", page=1, size=PAGE_SIZE, labels=()):
    return find(Level.STUDY, criteria, order_columns(STUDY_SORTS, sort, "-date"), page, size, STUDY_KEYS, labels)


def patients(criteria, sort="name", page=1, size=PAGE_SIZE):
    return find(Level.PATIENT, criteria, order_columns(PATIENT_SORTS, sort, "name"), page, size, PATIENT_KEYS)


PRIORS = 50


def priors(study):
    """The patient's other studies, newest first (at most PRIORS), each with its
    `modalities` ("CT, MR"): what a reader compares the study with."""
    rows = list(Study.objects.filter(patient_id=study.patient_id).exclude(pk=study.pk)
                .order_by("-study_date", "-pk")[:PRIORS])
    found = {}
    for study_id, modality in (Series.objects.filter(study_id__in=[r.pk for r in rows])
                               .order_by().values_list("study_id", "modality").distinct()):
        found.setdefault(study_id, set()).add(modality)
    for row in rows:
        row.modalities = ", ".join(sorted(m for m in found.get(row.pk, ()) if m))
    return rows


BULK_LIMIT = 500  # studies one bulk action takes: a page's worth many times over


def described(public_ids):
    """The studies (in the given order) with their patient, `n_series` and `n_instances`:
    what a confirmation names."""
    rows = {row.public_id: row for row in
            Study.objects.filter(public_id__in=public_ids).select_related("patient")
            .annotate(n_series=Count("series", distinct=True), n_instances=Count("series__instances"))}
    return [rows[public_id] for public_id in public_ids if public_id in rows]


def labels(public_ids):
    """{public id: {"patient": "DOE^JOHN (P1)", "what": "2024-01-05 CT CHEST · AXIAL"}} for the
    resources of any level still in the archive: what the Jobs and Changes pages show in
    place of ids. One query per level, whatever the number of ids."""
    ids = [i for i in dict.fromkeys(public_ids) if i]
    found = {}
    if not ids:
        return found
    for model, related in ((Patient, None), (Study, "patient"), (Series, "study__patient"),
                           (Instance, "series__study__patient")):
        rows = model.objects.filter(public_id__in=ids)
        if related:
            rows = rows.select_related(related)
        for row in rows:
            found[row.public_id] = _label(row)
    return found


def _label(row):
    chain = [row]
    while not isinstance(chain[-1], Patient):
        chain.append(getattr(chain[-1], {Study: "patient", Series: "study", Instance: "series"}[type(chain[-1])]))
    words = []
    patient = chain[-1].main_dicom_tags
    for item in reversed(chain[:-1]):
        tags = item.main_dicom_tags
        if isinstance(item, Study):
            date = tags.get("StudyDate", "")
            words.append(" ".join(x for x in (f"{date[:4]}-{date[4:6]}-{date[6:]}" if len(date) == 8 else date,
                                              tags.get("StudyDescription", "")) if x))
        elif isinstance(item, Series):
            words.append(" ".join(x for x in (tags.get("Modality", ""), tags.get("SeriesDescription", "")) if x))
        else:
            words.append(f"#{tags.get('InstanceNumber', '?')}")
    return {"patient": patient.get("PatientName", ""), "patient_id": patient.get("PatientID", ""),
            "what": " · ".join(w for w in words if w)}
