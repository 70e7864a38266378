"""Sorted, paged searches for the console, on archive.query's matching engine.

The matching (wildcards, ranges, lists, normalised names and identifiers), the
computed keys and the values come from archive.query, the engine behind C-FIND,
QIDO-RS and /tools/find. query.find() always answers in primary-key order; the
console also sorts by a column, so this module runs the engine's conditions,
counts and values with an ORDER BY of its own. LIMIT / OFFSET run in the
database: a page costs the same few queries whatever the size of the archive.
"""

from dataclasses import dataclass

from archive import query
from archive.models import Level

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


@dataclass
class Page:
    matches: list
    total: int
    number: int
    size: int

    @property
    def pages(self):
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self):
        return self.number > 1

    @property
    def has_next(self):
        return self.number < self.pages

    @property
    def first_index(self):
        return (self.number - 1) * self.size + 1 if self.total else 0

    @property
    def last_index(self):
        return min(self.total, self.number * self.size)


def order_columns(sorts, sort, default):
    """The ORDER BY columns of a sort key such as "-date" (unknown keys: the default)."""
    descending = sort.startswith("-")
    columns = sorts.get(sort.lstrip("-"))
    if columns is None:
        return order_columns(sorts, default, default)
    return [("-" + c) if descending else c for c in columns]


def find(level, criteria, order, page=1, size=PAGE_SIZE, return_keys=()):
    """A Page of query.Match for the criteria (DICOM matching keys → strings), in
    `order` (columns), page `page` (from 1). Raises query.InvalidQuery."""
    if level not in query.LEVELS:
        raise query.InvalidQuery(f"unknown query level {level!r}")
    rows = query.MODELS[level].objects.all()
    related = [path.rstrip("_") for path in query.PATHS[level].values() if path]
    if related:
        rows = rows.select_related(*related)
    for keyword, value in criteria.items():
        condition = query._condition(level, keyword, value, False)
        if condition is not None:
            rows = rows.filter(condition)
    total = rows.count()
    pages = max(1, -(-total // size))
    page = min(max(1, page), pages)
    wanted = set(return_keys) | set(criteria)
    rows = query._annotate_counts(rows, level, wanted).order_by(*order, "pk")
    offset = (page - 1) * size
    found = list(rows[offset:offset + size])
    extra = query._aggregates(level, found, wanted)
    matches = [query.Match(level, row, query._values(level, row, wanted, extra)) for row in found]
    return Page(matches, total, page, size)


def studies(criteria, sort="-date", page=1, size=PAGE_SIZE):
    return find(Level.STUDY, criteria, order_columns(STUDY_SORTS, sort, "-date"), page, size, STUDY_KEYS)


def patients(criteria, sort="name", page=1, size=PAGE_SIZE):
    return find(Level.PATIENT, criteria, order_columns(PATIENT_SORTS, sort, "name"), page, size, PATIENT_KEYS)
