"""One matching engine for C-FIND, QIDO-RS, /tools/find, the console, and (through
`condition`) the modality worklist.

A query names a level and DICOM matching keys (keyword → DICOM matching string,
PS3.4 C.2.2.2): empty is universal matching, `*` and `?` are wildcards, `a-b`,
`-b`, `a-` are ranges on dates and times, `a\\b\\c` is a list of UIDs (or of
values). Matching runs in the database on the indexed columns and the main DICOM
tags; no file is read. Keys the index does not hold are returned empty and do not
restrict the answer, as in Orthanc.
"""

import re
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from archive.errors import InvalidQuery  # noqa: F401 (raised here, caught by name)
from archive import signals, tags
from archive.models import Instance, Label, Level, Patient, Series, Study

LEVELS = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.INSTANCE)
MODELS = {Level.PATIENT: Patient, Level.STUDY: Study, Level.SERIES: Series, Level.INSTANCE: Instance}
# From a row of the level (key) to the row of another level.
PATHS = {
    Level.PATIENT: {Level.PATIENT: ""},
    Level.STUDY: {Level.PATIENT: "patient__", Level.STUDY: ""},
    Level.SERIES: {Level.PATIENT: "study__patient__", Level.STUDY: "study__", Level.SERIES: ""},
    Level.INSTANCE: {Level.PATIENT: "series__study__patient__", Level.STUDY: "series__study__",
                     Level.SERIES: "series__", Level.INSTANCE: ""},
}
TAG_LEVEL = {}
for _level, _keywords in ((Level.PATIENT, tags.PATIENT_TAGS), (Level.STUDY, tags.STUDY_TAGS),
                          (Level.SERIES, tags.SERIES_TAGS), (Level.INSTANCE, tags.INSTANCE_TAGS)):
    for _keyword in _keywords:
        TAG_LEVEL.setdefault(_keyword, _level)

# Keys matched on an indexed column. "norm" columns hold tags.normalize()d text:
# person names match case- and accent-insensitively (PS3.4 C.2.2.2.1 lets the
# SCP choose; Orthanc's default), and Orthanc compares identifiers such as
# PatientID and AccessionNumber in that normalised form too.
COLUMNS = {
    "PatientID": (Level.PATIENT, "patient_id_norm", True),
    "PatientName": (Level.PATIENT, "patient_name_norm", True),
    "PatientBirthDate": (Level.PATIENT, "patient_birth_date", False),
    "StudyInstanceUID": (Level.STUDY, "study_instance_uid", False),
    "StudyDate": (Level.STUDY, "study_date", False),
    "AccessionNumber": (Level.STUDY, "accession_number_norm", True),
    "SeriesInstanceUID": (Level.SERIES, "series_instance_uid", False),
    "Modality": (Level.SERIES, "modality", False),
    "SOPInstanceUID": (Level.INSTANCE, "sop_instance_uid", False),
    "SOPClassUID": (Level.INSTANCE, "sop_class_uid", False),
}
RANGE_KEYWORDS_SUFFIXES = ("Date", "Time", "DateTime")
COMPUTED = {
    "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances",
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances",
    "ModalitiesInStudy", "SOPClassesInStudy",
}


class Typed(str):
    """A name as a person types it in a search box ("Doe, John", "john doe", "DOE^JOHN",
    "müller"), not a DICOM matching string: every word must start a word of the name,
    in any order, case and accents ignored. The console sends these for names typed
    without wildcards; C-FIND and QIDO-RS send DICOM matching strings and keep their
    semantics (PS3.4 C.2.2.2: `doe^john` is the whole name, `john` is nobody's)."""

    WORDS = re.compile(r"[\s,^]+")

    def condition(self, lookup):
        """Every word must follow the start of the (normalised) name or a character
        that is not a letter or digit: `^`, a space, a hyphen, an apostrophe."""
        where = Q()
        for word in self.WORDS.split(tags.normalize(self)):
            if word:
                where &= Q(**{f"{lookup}__regex": "(^|[^A-Z0-9])" + re.escape(word)})
        return where

    def dicom_patterns(self):
        """The DICOM matching strings that find the name typed at a peer that knows
        only DICOM matching (a C-FIND to another PACS): upper case, accents kept (the
        peer may compare them), family and given names as prefixes; a lone word as a
        family or a given name, two loose words in either order. Each is one C-FIND."""
        words = [w for w in self.WORDS.split(self.strip().upper()) if w]
        if not words:
            return []
        if len(words) == 1:
            return [f"{words[0]}*", f"*^{words[0]}*"]
        if len(words) == 2:
            first, second = words
            ordered = [f"{first}*^{second}*"]
            if "," not in self and "^" not in self:
                ordered.append(f"{second}*^{first}*")
            return ordered
        return ["*".join(words) + "*"]


@dataclass
class Query:
    level: str
    criteria: dict = field(default_factory=dict)
    case_sensitive_names: bool = False
    limit: int | None = None
    offset: int = 0
    # Columns (a "-" prefix reverses) the answer is sorted by before the primary key.
    order: tuple = ()
    # Labels of the resource itself (Orthanc 1.12's /tools/find): it must carry
    # all of them, any of them, or none of them.
    labels: tuple = ()
    labels_constraint: str = "All"


@dataclass
class Match:
    """One answer: the resource row and the values of every key asked for."""

    level: str
    row: object
    values: dict


def result_limit(requested=None):
    """How many answers a search gets: what its client asked for (QIDO's `limit`,
    /tools/find's `Limit`), else PACS_FIND_DEFAULT_LIMIT, never more than
    PACS_FIND_MAX_LIMIT (Orthanc's LimitFindResults / LimitFindInstances). An
    unbounded answer costs ~19 KB per instance in QIDO, ~7 KB per C-FIND match."""
    return min(requested or settings.FIND_DEFAULT_LIMIT, settings.FIND_MAX_LIMIT)


def find(query, return_keys=()):
    """Rows matching the query, as Match objects, in a stable order.

    Fetches at most limit + 1 rows so the caller can tell whether more exist;
    `more` is True when the limit cut the answer.
    """
    queryset, wanted = _matching(query, return_keys)
    end = None if query.limit is None else query.offset + query.limit + 1
    rows = list(queryset[query.offset:end])
    more = query.limit is not None and len(rows) > query.limit
    if more:
        rows = rows[: query.limit]
    return _matches(query.level, rows, wanted), more


def count(query):
    """How many resources match the query (counted in the database)."""
    return _matching(query, ())[0].count()


@dataclass
class Page:
    """One page of the matches of a query, and how many there are in all."""

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


def find_page(query, return_keys=(), page=1, size=25):
    """Page `page` (from 1, clamped to the last) of `size` matches of the query,
    in its order; the total is counted in the database, and LIMIT / OFFSET run
    there too: a page costs the same few queries whatever the archive's size."""
    if size < 1:
        raise InvalidQuery(f"a page holds at least one match, not {size}")
    queryset, wanted = _matching(query, return_keys)
    total = queryset.count()
    page = min(max(1, page), max(1, -(-total // size)))
    offset = (page - 1) * size
    rows = list(queryset[offset:offset + size])
    return Page(_matches(query.level, rows, wanted), total, page, size)


def _matching(query, return_keys):
    """The matching rows of the query, annotated with the counts asked for and
    ordered; and the set of keys whose values the answer needs."""
    if query.level not in LEVELS:
        raise InvalidQuery(f"unknown query level {query.level!r}")
    signals.count("pacs_queries_total", level=query.level)
    queryset = MODELS[query.level].objects.all()
    related = [path.rstrip("_") for path in PATHS[query.level].values() if path]
    if related:
        queryset = queryset.select_related(*related)
    for keyword, value in query.criteria.items():
        where = _condition(query.level, keyword, value, query.case_sensitive_names)
        if where is not None:
            queryset = queryset.filter(where)
    queryset = _with_labels(queryset, query.labels, query.labels_constraint)
    wanted = set(return_keys) | set(query.criteria)
    queryset = _annotate_counts(queryset, query.level, wanted)
    return queryset.order_by(*query.order, "pk"), wanted


def requested_values(level, public_ids, return_keys):
    """{public id: {keyword: value}} for these resources: Orthanc 1.12's requestedTags,
    answered as /tools/find answers its RequestedTags, in a constant number of queries."""
    if not public_ids or not return_keys:
        return {}
    wanted = set(return_keys)
    queryset = MODELS[level].objects.filter(public_id__in=list(public_ids))
    related = [path.rstrip("_") for path in PATHS[level].values() if path]
    if related:
        queryset = queryset.select_related(*related)
    rows = list(_annotate_counts(queryset, level, wanted))
    return {match.row.public_id: {key: match.values.get(key, "") for key in return_keys}
            for match in _matches(level, rows, wanted)}


def _with_labels(queryset, labels, constraint):
    if not labels:
        return queryset
    if constraint == "All":
        for name in set(labels):
            queryset = queryset.filter(public_id__in=Label.objects.filter(name=name).values("resource_id"))
        return queryset
    carrying = Label.objects.filter(name__in=list(labels)).values("resource_id")
    if constraint == "Any":
        return queryset.filter(public_id__in=carrying)
    if constraint == "None":
        return queryset.exclude(public_id__in=carrying)
    raise InvalidQuery(f"LabelsConstraint must be All, Any or None, not {constraint!r}")


def _matches(level, rows, wanted):
    extra = _aggregates(level, rows, wanted)
    return [Match(level, row, _values(level, row, wanted, extra)) for row in rows]


def condition(lookup, keyword, value, normalized=False):
    """The condition that `lookup` (a column, or a path to one) matches the DICOM
    matching string `value` of `keyword` (PS3.4 C.2.2.2): single value, wildcards,
    range (keywords ending in Date / Time / DateTime), list; None for universal
    matching. `normalized`: the column holds tags.normalize()d text, and the value
    is normalised the same way. What matches archive names matches worklist names."""
    value = _trimmed(value)
    if _universal(value):
        return None
    return _match(lookup, keyword, value, normalized)


def _trimmed(value):
    if isinstance(value, Typed):
        return Typed(value.strip())
    return (value or "").strip() if not isinstance(value, (list, tuple)) else value


def _universal(value):
    return value in ("", "*", [], ())


def _condition(level, keyword, value, case_sensitive_names):
    value = _trimmed(value)
    if _universal(value):
        return None  # universal matching
    if keyword == "ModalitiesInStudy":
        if LEVELS.index(level) > LEVELS.index(Level.STUDY) or level == Level.PATIENT:
            return None
        prefix = PATHS[level][Level.STUDY]
        modalities = [m.strip().upper() for m in _values_list(value)]
        return Q(**{f"{prefix}pk__in": Series.objects.filter(modality__in=modalities).values("study_id")})
    if keyword in COMPUTED:
        return None
    if keyword in COLUMNS:
        tag_level, column, normalized = COLUMNS[keyword]
        if keyword == "PatientName" and case_sensitive_names:
            column, normalized = "main_dicom_tags__PatientName", False
    elif keyword in TAG_LEVEL:
        tag_level, column, normalized = TAG_LEVEL[keyword], f"main_dicom_tags__{keyword}", False
    else:
        return None  # not indexed: does not restrict (Orthanc does the same)
    if LEVELS.index(tag_level) > LEVELS.index(level):
        return None  # a key below the query level: not a matching key here
    return condition(PATHS[level][tag_level] + column, keyword, value, normalized)


def _match(lookup, keyword, value, normalized):
    if isinstance(value, Typed):
        # Only the normalised name columns know words; elsewhere it is the prefix the form used to send.
        return value.condition(lookup) if normalized else Q(**{f"{lookup}__startswith": str(value)})
    values = _values_list(value)
    if len(values) > 1:
        # List of UID matching (C.2.2.2.2), and value lists for other keys.
        return Q(**{f"{lookup}__in": [_prepare(v, normalized) for v in values]})
    value = values[0]
    if keyword.endswith(RANGE_KEYWORDS_SUFFIXES) and "-" in value:
        low, _, high = value.partition("-")
        bounds = Q()
        if low:
            bounds &= Q(**{f"{lookup}__gte": low.strip()})
        if high:
            # A time bound "120000" includes 12:00:00.5 (PS3.4 C.2.2.2.5).
            suffix = ".999999" if keyword.endswith("Time") else ""
            bounds &= Q(**{f"{lookup}__lte": high.strip() + suffix})
        if not low and not high:
            raise InvalidQuery(f"{keyword}: a range needs at least one bound")
        return bounds
    value = _prepare(value, normalized)
    if "*" in value or "?" in value:
        body = value.rstrip("*")
        if "*" not in body and "?" not in body and value.endswith("*"):
            return Q(**{f"{lookup}__startswith": body})
        wildcards = value.count("*") + value.count("?")
        if wildcards > settings.QUERY_MAX_WILDCARDS:
            raise InvalidQuery(f"{keyword}: {wildcards} wildcards, more than PACS_QUERY_MAX_WILDCARDS "
                               f"({settings.QUERY_MAX_WILDCARDS}) allows")
        return Q(**{f"{lookup}__regex": wildcard_regex(value, connection.vendor)})
    return Q(**{lookup: value})


def wildcard_regex(value, vendor):
    """The regular expression of a DICOM wildcard value (`*` any run, `?` one character).

    On SQLite the expression runs in Python's backtracking `re` (Django's REGEXP
    function): `^.*a.*b.*c...$` costs O(n^k) on a value that does not match, and
    12 stars took 29 s. There, each run between stars is found at its first
    occurrence inside an atomic group, which never gives back what it matched: the
    first occurrence leaves the most room to what follows, so this answers the
    same, in time linear in the pattern for a given value. PostgreSQL's regex
    engine is not backtracking (and has no atomic groups): it gets the plain form.
    """
    def run(text):
        return "".join("." if c == "?" else re.escape(c) for c in text)

    if vendor != "sqlite":
        return "^" + "".join(".*" if c == "*" else run(c) for c in value) + "$"
    first, *middle, last = value.split("*") if "*" in value else (value, None)
    if last is None:
        return "(?s)^" + run(first) + "$"
    return "(?s)^" + run(first) + "".join(f"(?>.*?{run(m)})" for m in middle if m) + ".*" + run(last) + "$"


def _values_list(value):
    if isinstance(value, (list, tuple)):
        values = [str(v) for v in value]
    else:
        values = value.split("\\")
    if len(values) > settings.QUERY_MAX_LIST:
        raise InvalidQuery(f"a list of {len(values)} values, more than PACS_QUERY_MAX_LIST ({settings.QUERY_MAX_LIST}) allows")
    return values


def _prepare(value, normalized):
    return tags.normalize(value) if normalized else value


# The computed counters (PS3.4 C.6.1.1.x): the level that answers each, and the
# annotation _annotate_counts gives its rows.
COUNTERS = {
    "NumberOfPatientRelatedStudies": (Level.PATIENT, "n_studies"),
    "NumberOfPatientRelatedSeries": (Level.PATIENT, "n_series"),
    "NumberOfPatientRelatedInstances": (Level.PATIENT, "n_instances"),
    "NumberOfStudyRelatedSeries": (Level.STUDY, "n_series"),
    "NumberOfStudyRelatedInstances": (Level.STUDY, "n_instances"),
    "NumberOfSeriesRelatedInstances": (Level.SERIES, "n_instances"),
}


def _annotate_counts(queryset, level, wanted):
    annotations = {}
    if level == Level.PATIENT:
        if "NumberOfPatientRelatedStudies" in wanted:
            annotations["n_studies"] = _count(Study, "patient_id")
        if "NumberOfPatientRelatedSeries" in wanted:
            annotations["n_series"] = _count(Series, "study__patient_id")
        if "NumberOfPatientRelatedInstances" in wanted:
            annotations["n_instances"] = _count(Instance, "series__study__patient_id")
    elif level == Level.STUDY:
        if "NumberOfStudyRelatedSeries" in wanted:
            annotations["n_series"] = _count(Series, "study_id")
        if "NumberOfStudyRelatedInstances" in wanted:
            annotations["n_instances"] = _count(Instance, "series__study_id")
    elif level == Level.SERIES:
        if "NumberOfSeriesRelatedInstances" in wanted:
            annotations["n_instances"] = _count(Instance, "series_id")
    return queryset.annotate(**annotations) if annotations else queryset


def _count(model, parent_field):
    # Built once per (model, parent): an expression is copied whenever a queryset
    # resolves it, and building its inner queryset (five clones) cost ~0.2 ms a
    # search, every search.
    expression = _COUNTS.get((model, parent_field))
    if expression is None:
        subquery = (
            model.objects.filter(**{parent_field: OuterRef("pk")})
            .order_by()
            .values(parent_field)
            .annotate(n=Count("pk"))
            .values("n")
        )
        expression = _COUNTS[model, parent_field] = Coalesce(Subquery(subquery), 0)
    return expression


_COUNTS = {}


def _aggregates(level, rows, wanted):
    """ModalitiesInStudy / SOPClassesInStudy for a page of studies: two queries at most."""
    extra = {}
    if level != Level.STUDY or not rows:
        return extra
    ids = [row.pk for row in rows]
    # Plain SQL: ModalitiesInStudy is a required attribute of every QIDO-RS study
    # search (PS3.18 Table 10.6.3-5), and through the ORM this query cost ~0.3 ms of
    # CPU to build, more than it takes to run.
    in_ids = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        if "ModalitiesInStudy" in wanted:
            cursor.execute(f"SELECT DISTINCT study_id, modality FROM series WHERE study_id IN ({in_ids})", ids)
            for study_id, modality in cursor.fetchall():
                extra.setdefault(("ModalitiesInStudy", study_id), set()).add(modality)
        if "SOPClassesInStudy" in wanted:
            cursor.execute("SELECT DISTINCT s.study_id, i.sop_class_uid FROM instance i JOIN series s "
                           f"ON s.id = i.series_id WHERE s.study_id IN ({in_ids})", ids)
            for study_id, sop_class in cursor.fetchall():
                extra.setdefault(("SOPClassesInStudy", study_id), set()).add(sop_class)
    return extra


def _values(level, row, wanted, extra):
    """Every wanted key's value for this row, from its own and its parents' main tags."""
    chain = {level: row}
    current = row
    for parent_level, attribute in ((Level.SERIES, "series"), (Level.STUDY, "study"), (Level.PATIENT, "patient")):
        if hasattr(current, attribute) and LEVELS.index(parent_level) < LEVELS.index(level):
            current = getattr(current, attribute)
            chain[parent_level] = current
    values = {}
    for keyword in wanted:
        if keyword in COUNTERS:
            # A counter is answered at its own level only (_annotate_counts); asked
            # at another level it stays empty, as Orthanc leaves it.
            counter_level, attribute = COUNTERS[keyword]
            values[keyword] = str(getattr(row, attribute)) if counter_level == level else ""
        elif keyword in ("ModalitiesInStudy", "SOPClassesInStudy"):
            values[keyword] = "\\".join(sorted(extra.get((keyword, row.pk), ())))
        elif keyword in ("SOPClassUID",) and level == Level.INSTANCE:
            values[keyword] = row.sop_class_uid
        elif keyword in tags.IMAGE_TAGS and level == Level.INSTANCE:
            values[keyword] = (row.image_tags or {}).get(keyword, "")
        else:
            tag_level = TAG_LEVEL.get(keyword)
            owner = chain.get(tag_level)
            values[keyword] = (owner.main_dicom_tags.get(keyword, "") if owner is not None else "")
    return values
