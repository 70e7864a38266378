"""One matching engine for C-FIND, QIDO-RS, /tools/find, the console, and (through
`condition`) the modality worklist.

A query names a level and DICOM matching keys (keyword → DICOM matching string,
PS3.4 C.2.2.2): empty is universal matching, `*` and `?` are wildcards, `a-b`,
`-b`, `a-` are ranges on dates and times, `a\\b\\c` is a list of UIDs (or of
values). Matching runs in the database on the indexed columns and the main DICOM
tags; no file is read. Keys the index does not hold are returned empty and do not
restrict the answer, as in Orthanc.
"""

import json
import re
import threading
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.db.models.query import get_related_populators

from archive.errors import InvalidQuery  # noqa: F401 (raised here, caught by name)
from archive import db, roles, signals, tags
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

    def condition(self, lookup, put=None):
        """Every word must follow the start of the (normalised) name or a character
        that is not a letter or digit: `^`, a space, a hyphen, an apostrophe."""
        put = put or _as_is
        where = Q()
        for word in self.WORDS.split(tags.normalize(self)):
            if word:
                where &= Q(**{f"{lookup}__regex": put(f"{lookup}__regex", "(^|[^A-Z0-9])" + re.escape(word))})
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


def find(query, return_keys=(), credentials=None):
    """Rows matching the query, as Match objects, in a stable order.

    Fetches at most limit + 1 rows so the caller can tell whether more exist;
    `more` is True when the limit cut the answer.

    With a request's remembered `credentials` (roles.Credentials), the statement
    checks them too, in a column of its own: raises CredentialsRefused when they no
    longer hold. A search that finds nothing leaves them unchecked.
    """
    wanted = _asked(query, return_keys)
    statement, values = _statement(query, wanted, credentials)
    fetched = None if query.limit is None else query.limit + 1
    if statement is _UNSHAPED:
        end = None if fetched is None else query.offset + fetched
        rows = list(_queryset(query, wanted, _as_is, credentials=credentials)[query.offset:end])
    else:
        rows = statement.rows(values, query.offset, fetched)
    if credentials is not None and rows:
        credentials.settle(bool(getattr(rows[0], _CREDENTIALS_HOLD)))
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
    wanted = _asked(query, return_keys)
    return _queryset(query, wanted, _as_is), wanted


def _asked(query, return_keys):
    """The keys whose values the answer needs, once the query's level is known good (and counted)."""
    if query.level not in LEVELS:
        raise InvalidQuery(f"unknown query level {query.level!r}")
    signals.count("pacs_queries_total", level=query.level)
    return set(return_keys) | set(query.criteria)


def _queryset(query, wanted, put, build=True, credentials=None):
    """The query's queryset, each value of its conditions passed through `put`
    (lookup, value) on its way into them. With `build` False only the conditions
    are made (what `put` sees: their validation, their values and their order).
    With `credentials`, a last column says whether they hold (_CREDENTIALS_HOLD)."""
    conditions = [where for where in (_condition(query.level, keyword, value, query.case_sensitive_names, put)
                                      for keyword, value in query.criteria.items()) if where is not None]
    labels = _labels(query.labels, query.labels_constraint, put)
    if credentials is not None:
        holding = roles.credentials_column(credentials, put(None, credentials.user_id),
                                           put(None, credentials.password))
    if not build:
        return None
    queryset = MODELS[query.level].objects.all()
    related = [path.rstrip("_") for path in PATHS[query.level].values() if path]
    if related:
        queryset = queryset.select_related(*related)
    for where in conditions:
        queryset = queryset.filter(where)
    for where in labels:
        queryset = queryset.filter(where)
    queryset = _annotate_counts(queryset, query.level, wanted)
    if credentials is not None:
        queryset = queryset.annotate(**{_CREDENTIALS_HOLD: holding})
    return queryset.order_by(*query.order, "pk")


_CREDENTIALS_HOLD = "credentials_hold"


def _as_is(lookup, value):
    return value


class _Slots:
    """What find() records of a query's conditions: their values in the order they
    are made, and the shape of the statement (each lookup, and how many values a
    list has), which the values do not change."""

    def __init__(self):
        self.values, self.shape = [], []

    def put(self, lookup, value):
        if isinstance(value, list):
            self.values.extend(value)
            self.shape.append((lookup, len(value)))
        else:
            self.values.append(value)
            self.shape.append((lookup, None))
        return value


class _Sentinels:
    """Stands a text of its own for each value, in the order _Slots records them,
    so that _Statement finds where each lands among the compiled statement's
    parameters (and what Django made of it there)."""

    def __init__(self):
        self.made = 0

    def put(self, lookup, value):
        if isinstance(value, list):
            return [self._next() for _ in value]
        return self._next()

    def _next(self):
        self.made += 1
        return _sentinel(self.made - 1)


def _sentinel(slot):
    # Letters and digits only: Django's LIKE escaping and JSON encoding keep it whole.
    return f"{_SENTINEL}{slot}QZ"


_SENTINEL = "QZSLOT"


def _statement(query, wanted, credentials=None):
    """(The _Statement of the query's shape, the values of its conditions in order)."""
    slots = _Slots()
    _queryset(query, wanted, slots.put, build=False, credentials=credentials)
    shape = (connection.vendor, query.level, tuple(slots.shape), query.labels_constraint if query.labels else "",
             _counters(query.level, wanted), tuple(query.order), credentials and credentials.role)
    statement = _STATEMENTS.get(shape)
    if statement is None:
        try:
            statement = _Statement(_queryset(query, wanted, _Sentinels().put, credentials=credentials))
        except _Unknown:
            statement = _UNSHAPED
        _keep(shape, statement)
    return statement, slots.values


def _keep(shape, statement):
    # The web process's and the listener's threads share the statements: one at a
    # time may change the dict (iterating it while another inserts raises).
    with _STATEMENTS_LOCK:
        if len(_STATEMENTS) >= _STATEMENTS_KEPT:
            _STATEMENTS.pop(next(iter(_STATEMENTS)), None)
        _STATEMENTS[shape] = statement


_STATEMENTS = {}
_STATEMENTS_LOCK = threading.Lock()
# Shapes are few in use (a viewer's, a modality's, a script's searches); the bound
# holds the memory of a client that makes up new ones.
_STATEMENTS_KEPT = 512
_UNSHAPED = object()


class _Statement:
    """A search's SELECT as Django compiles it for one shape of query, kept per
    process: compiling a search through the ORM (its select-related columns, the
    counters' subqueries, the ordering) cost ~1.2 ms of a ~2 ms QIDO-RS search, the
    same work every time for the same keys. Its rows become model instances as
    Django's ModelIterable makes them, through the same compiler state."""

    def __init__(self, queryset):
        compiler = queryset.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        self.sql = sql
        # Each parameter: a constant, or the value of a slot as Django passes it on.
        self.params = []
        for param in params:
            self.params.append(_slot_form(param) or (None, param))
        select, klass_info = compiler.select, compiler.klass_info
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [column[0].target.attname for column in select[self.start:self.end]]
        self.related = get_related_populators(klass_info, select, connection.alias)
        self.annotations = list(compiler.annotation_col_map.items())
        self.converters = list(compiler.get_converters([column[0] for column in select[:compiler.col_count]]).items())

    def rows(self, values, offset, limit):
        params = [given if form is None else form(values[given]) for form, given in self.params]
        sql = self.sql
        if limit is not None or offset:
            sql += " LIMIT %s OFFSET %s"
            params += [connection.ops.no_limit_value() if limit is None else limit, offset]
        with db.statements() as cursor:
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
        objects = []
        for row in fetched:
            if self.converters:
                row = list(row)
                for position, (functions, expression) in self.converters:
                    value = row[position]
                    for function in functions:
                        value = function(value, expression, connection)
                    row[position] = value
            obj = self.model.from_db(connection.alias, self.init_list, row[self.start:self.end])
            for populator in self.related:
                populator.populate(row, obj)
            for name, position in self.annotations:
                setattr(obj, name, row[position])
            objects.append(obj)
        return objects


def _slot_form(param):
    """(how a value becomes this parameter, its slot), from what Django made of the
    slot's sentinel; None for a constant."""
    # A JSON value is text on SQLite, an adapter holding the value on PostgreSQL.
    held = param if isinstance(param, str) else getattr(param, "obj", None)
    if not isinstance(held, str) or _SENTINEL not in held:
        if _SENTINEL in repr(param):
            raise _Unknown(param)
        return None
    start = held.index(_SENTINEL) + len(_SENTINEL)
    slot = int(held[start:held.index("QZ", start)])
    sentinel = _sentinel(slot)
    if param == sentinel:
        return (_as_text, slot)
    if param == sentinel + "%":
        return (_like_prefix, slot)
    if param == json.dumps(sentinel) or held is not param and held == sentinel:
        return (_as_json, slot)
    raise _Unknown(param)


def _as_text(value):
    return value


def _like_prefix(value):
    return connection.ops.prep_for_like_query(value) + "%"


def _as_json(value):
    return connection.ops.adapt_json_value(value, None)


class _Unknown(Exception):
    """Django passed a value on in a form _Statement cannot rebuild from another value:
    that shape of query is compiled by the ORM every time."""


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


def _labels(labels, constraint, put):
    """The conditions on the resource's own labels."""
    if not labels:
        return []
    if constraint == "All":
        return [Q(public_id__in=Label.objects.filter(name=put("label", name)).values("resource_id"))
                for name in dict.fromkeys(labels)]
    if constraint not in ("Any", "None"):
        raise InvalidQuery(f"LabelsConstraint must be All, Any or None, not {constraint!r}")
    carrying = Label.objects.filter(name__in=put("labels", list(labels))).values("resource_id")
    return [Q(public_id__in=carrying) if constraint == "Any" else ~Q(public_id__in=carrying)]


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
    return _match(lookup, keyword, value, normalized, _as_is)


def _trimmed(value):
    if isinstance(value, Typed):
        return Typed(value.strip())
    return (value or "").strip() if not isinstance(value, (list, tuple)) else value


def _universal(value):
    return value in ("", "*", [], ())


def _condition(level, keyword, value, case_sensitive_names, put):
    value = _trimmed(value)
    if _universal(value):
        return None  # universal matching
    if keyword == "ModalitiesInStudy":
        if LEVELS.index(level) > LEVELS.index(Level.STUDY) or level == Level.PATIENT:
            return None
        prefix = PATHS[level][Level.STUDY]
        modalities = [m.strip().upper() for m in _values_list(value)]
        return Q(**{f"{prefix}pk__in": Series.objects.filter(
            modality__in=put("ModalitiesInStudy", modalities)).values("study_id")})
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
    return _match(PATHS[level][tag_level] + column, keyword, value, normalized, put)


def _match(lookup, keyword, value, normalized, put):
    def where(operator, value):
        name = f"{lookup}__{operator}" if operator else lookup
        return Q(**{name: put(name, value)})

    if isinstance(value, Typed):
        # Only the normalised name columns know words; elsewhere it is the prefix the form used to send.
        return value.condition(lookup, put) if normalized else where("startswith", str(value))
    values = _values_list(value)
    if len(values) > 1:
        # List of UID matching (C.2.2.2.2), and value lists for other keys.
        return where("in", [_prepare(v, normalized) for v in values])
    value = values[0]
    if keyword.endswith(RANGE_KEYWORDS_SUFFIXES) and "-" in value:
        low, _, high = value.partition("-")
        bounds = Q()
        if low:
            bounds &= where("gte", low.strip())
        if high:
            # A time bound "120000" includes 12:00:00.5 (PS3.4 C.2.2.2.5).
            suffix = ".999999" if keyword.endswith("Time") else ""
            bounds &= where("lte", high.strip() + suffix)
        if not low and not high:
            raise InvalidQuery(f"{keyword}: a range needs at least one bound")
        return bounds
    value = _prepare(value, normalized)
    if "*" in value or "?" in value:
        body = value.rstrip("*")
        if "*" not in body and "?" not in body and value.endswith("*") and (normalized or connection.vendor != "sqlite"):
            # SQLite's LIKE ignores ASCII case: there a prefix of a case-sensitive column goes to the regex.
            return _prefix(where, body)
        wildcards = value.count("*") + value.count("?")
        if wildcards > settings.QUERY_MAX_WILDCARDS:
            raise InvalidQuery(f"{keyword}: {wildcards} wildcards, more than PACS_QUERY_MAX_WILDCARDS "
                               f"({settings.QUERY_MAX_WILDCARDS}) allows")
        return where("regex", wildcard_regex(value, connection.vendor))
    return where("", value)


def _prefix(where, body):
    """The condition that a column starts with `body`.

    SQLite runs LIKE without the column's index (its LIKE ignores ASCII case, the index
    does not), so a name search read every study of the archive: a normalised column
    holds no lower-case ASCII, and there the texts that start with `body` are the range
    from it to its successor, which the index serves. PostgreSQL's LIKE has an index of
    its own (Django's `_like` index of each indexed text column)."""
    if connection.vendor == "sqlite" and body:
        after = _successor(body)
        if after is not None:
            return where("gte", body) & where("lt", after)
    return where("startswith", body)


def _successor(text):
    """The least text after every text that starts with `text`, in code point order
    (SQLite's BINARY collation of UTF-8); None where there is none to write."""
    following = ord(text[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:
        following = 0xE000  # surrogates are no text: the next character is U+E000
    if following > 0x10FFFF:
        return None
    return text[:-1] + chr(following)


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


def _counters(level, wanted):
    """The counters a search of this level answers (its rows' annotations)."""
    return tuple(sorted(k for k in wanted if k in COUNTERS and COUNTERS[k][0] == level))


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
    with db.statements() as cursor:
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
