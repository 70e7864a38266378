"""QIDO-RS (PS3.18 §10.6): search for studies, series and instances, answered in DICOM JSON.

The query parameters become one query for the archive's matching engine
(archive.query), which matches on the index and never reads a file; a search
costs the same few SQL queries whatever the number of results.
"""

import functools
import re

from django.views.decorators.http import require_GET
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement

from archive import query
from api.dicomweb import (
    DICOM_JSON,
    accepts_dicom_json,
    dicom_json_response,
    element_json,
    studies_url,
    unparsed_json,
)
from archive.models import Level
from archive.roles import checks_credentials, remembered_credentials
from api.rest.errors import error_response, rest_view

ORDER = [Level.STUDY, Level.SERIES, Level.INSTANCE]
# PS3.18 Table 10.6.3-3, -4 and -5 (6.7.1-2 and -2a): the attributes returned
# whatever the request, less those the index does not hold (TimezoneOffsetFromUTC,
# the performed procedure step and request attributes of a series). RetrieveURL
# and InstanceAvailability are added by _answer().
REQUIRED = {
    Level.STUDY: ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
                  "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
                  "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    Level.SERIES: ("Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
                   "NumberOfSeriesRelatedInstances"),
    Level.INSTANCE: ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "NumberOfFrames", "Rows", "Columns",
                     "BitsAllocated"),
}
# What the engine computes per level, beyond the main DICOM tags.
COMPUTED = {
    Level.STUDY: {"NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "ModalitiesInStudy",
                  "SOPClassesInStudy"},
    Level.SERIES: {"NumberOfSeriesRelatedInstances"},
    Level.INSTANCE: {"SOPClassUID", "Rows", "Columns", "BitsAllocated"},
}
# Query parameters that are not attributes (PS3.18 §8.3.4; orderby is a common
# extension that viewers send).
PARAMETERS = {"includefield", "limit", "offset", "fuzzymatching", "accept", "orderby"}
TAG = re.compile(r"^[0-9A-Fa-f]{8}$")


class InvalidSearch(Exception):
    """A query parameter is unknown or malformed; the message says which and why."""


@checks_credentials("GET")
@require_GET
@rest_view
def search_studies(request):
    return _search(request, Level.STUDY, {})


@checks_credentials("GET")
@require_GET
@rest_view
def search_series(request, study=None):
    return _search(request, Level.SERIES, {"StudyInstanceUID": study} if study else {})


@checks_credentials("GET")
@require_GET
@rest_view
def search_instances(request, study=None, series=None):
    fixed = {"StudyInstanceUID": study} if study else {}
    if series:
        fixed["SeriesInstanceUID"] = series
    return _search(request, Level.INSTANCE, fixed)


def _search(request, level, fixed):
    if not accepts_dicom_json(request):
        return error_response(request, 406, f"search results are served as {DICOM_JSON} only")
    try:
        search, keys, unmatched, unheld, unordered = _parse(request, level, fixed)
        found, more = query.find(search, return_keys=keys, credentials=remembered_credentials(request))
    except (InvalidSearch, query.InvalidQuery) as error:
        return error_response(request, 400, str(error))
    # No match is 200 with an empty array: CP-2473 replaced PS3.18's 204 (a 204
    # has no body, and OHIF and dicomweb-client expect JSON), as Orthanc answers.
    base = studies_url(request)
    response = dicom_json_response([_answer(match, keys, base) for match in found])
    warnings = _warnings(unmatched, unheld, more)
    if unordered:
        warnings.append(f"The answer cannot be ordered by {', '.join(unordered)}; that ordering was ignored")
    if warnings:
        # PS3.18 §10.6.3: a partial or approximated answer says so in Warning.
        response["Warning"] = ", ".join(f'299 pacsweb "{text}"' for text in warnings)
    return response


def _warnings(unmatched, unheld, more):
    warnings = []
    if unmatched:
        warnings.append(f"The index cannot match on {', '.join(sorted(unmatched))}; these keys were ignored")
    if unheld:
        warnings.append(f"The index does not hold {', '.join(sorted(unheld))}; these attributes are not returned")
    if more:
        warnings.append("There are additional results that can be requested")
    return warnings


def _parse(request, level, fixed):
    """(query.Query, return keywords, keys the index cannot match on, included keys it does not hold)."""
    criteria, included = {}, set()
    for name in request.GET:
        values = request.GET.getlist(name)
        if name == "includefield":
            for value in values:
                included |= _included(value, level)
        elif name in PARAMETERS:
            if len(values) > 1:
                raise InvalidSearch(f"{name} is given more than once")
        else:
            keyword = _keyword(name)
            if len(values) > 1:
                raise InvalidSearch(f"{name} is given more than once; a list of UIDs is one value separated by commas")
            criteria[keyword] = _matching_value(keyword, values[0])
    if _fuzzy(request) and "PatientName" in criteria:
        criteria["PatientName"] = _fuzzy_name(criteria["PatientName"])
    criteria.update(fixed)
    order, unordered = _order(request.GET.get("orderby"), level)
    search = query.Query(
        level=level,
        criteria=criteria,
        limit=query.result_limit(_integer(request, "limit", minimum=1)),
        offset=_integer(request, "offset", minimum=0) or 0,
        order=order,
    )
    unmatched = {keyword for keyword in criteria if keyword not in _matchable(level)}
    unheld = included - _returnable(level)
    keys = (_required(level, fixed) | included | set(criteria)) & _returnable(level)
    return search, sorted(keys), unmatched, unheld, unordered


def _order(text, level):
    """orderby=Key[,-Key]: database columns to sort by, and the keys that cannot be sorted on.

    The index sorts on the attributes it keeps in columns (PatientName,
    StudyDate, Modality...); any other key is ignored and named in a Warning.
    """
    order, unordered = [], []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        descending = item.startswith("-")
        name = item.lstrip("-+")
        try:
            keyword = _keyword(name)
        except InvalidSearch:
            unordered.append(name)
            continue
        column = query.COLUMNS.get(keyword)
        path = query.PATHS[level].get(column[0]) if column else None
        if path is None:
            unordered.append(name)
            continue
        order.append(("-" if descending else "") + path + column[1])
    return tuple(order), unordered


def _included(value, level):
    keys = set()
    for item in value.split(","):
        item = item.strip()
        if item == "all":
            keys |= _returnable(level)
        elif item:
            keys.add(_keyword(item))
    return keys


def _keyword(name):
    """A keyword from a query key: a keyword (PatientName) or a tag (00100010)."""
    if "." in name:
        raise InvalidSearch(f"{name}: matching on attributes inside sequences is not supported")
    if TAG.match(name):
        keyword = keyword_for_tag(int(name, 16))
        if not keyword:
            raise InvalidSearch(f"{name} is not a tag of the DICOM dictionary (private tags cannot be searched)")
        return keyword
    if tag_for_keyword(name) is None:
        raise InvalidSearch(f"{name} is neither a query parameter ({', '.join(sorted(PARAMETERS))}) "
                            "nor a DICOM keyword or tag")
    return name


def _matching_value(keyword, value):
    # PS3.18 §8.3.4.1: a list of UIDs may be separated by commas or by
    # backslashes (PS3.4 C.2.2.2.2); the engine takes backslashes.
    if dictionary_VR(keyword) == "UI":
        return value.replace(",", "\\")
    return value


def _integer(request, name, minimum):
    value = request.GET.get(name)
    if value is None:
        return None
    if not value.isdigit() or int(value) < minimum:
        raise InvalidSearch(f"{name} must be an integer of at least {minimum}, not {value!r}")
    return int(value)


def _fuzzy(request):
    value = request.GET.get("fuzzymatching")
    if value is not None and value not in ("true", "false"):
        raise InvalidSearch(f"fuzzymatching must be true or false, not {value!r}")
    return value == "true"


def _fuzzy_name(value):
    """fuzzymatching=true on a person name (PS3.18 §8.3.4.1, PS3.4 C.2.2.2.1.3).

    Names always match case- and accent-insensitively (the engine's normalised
    columns); fuzzy matching also finds the value inside the name, so "JOHN"
    finds "SMITH^JOHN" and "SMITH^JOHN^^DR". What is fuzzy is the archive's
    choice by the standard; a value with wildcards is taken as written.
    """
    if not value or "*" in value or "?" in value:
        return value
    return f"*{value}*"


def _required(level, fixed):
    """The level's required keys, with its parents' when the path does not fix them (PS3.18 §10.6.3.3)."""
    keys = set(REQUIRED[level])
    for parent in ORDER[: ORDER.index(level)]:
        parent_uid = "StudyInstanceUID" if parent == Level.STUDY else "SeriesInstanceUID"
        if parent_uid not in fixed:
            keys |= set(REQUIRED[parent])
    return keys


@functools.cache
def _returnable(level):
    """Keywords the index holds for a level: main tags of the level and above, computed keys."""
    rank = ORDER.index(level)
    own = {k for k, tag_level in query.TAG_LEVEL.items()
           if tag_level == Level.PATIENT or (tag_level in ORDER and ORDER.index(tag_level) <= rank)}
    return frozenset(own | COMPUTED[level])


@functools.cache
def _matchable(level):
    """Keywords the engine restricts on at a level (others it ignores, as Orthanc does)."""
    rank = ORDER.index(level)
    columns = {k for k, (tag_level, _, _) in query.COLUMNS.items()
               if tag_level == Level.PATIENT or ORDER.index(tag_level) <= rank}
    tags = {k for k, tag_level in query.TAG_LEVEL.items()
            if tag_level == Level.PATIENT or ORDER.index(tag_level) <= rank}
    return frozenset(columns | tags | ({"ModalitiesInStudy"} if level == Level.STUDY else set()))


def _answer(match, keys, base):
    values = {keyword: match.values.get(keyword, "") for keyword in keys}
    if match.level in (Level.STUDY, Level.INSTANCE):
        values["InstanceAvailability"] = "ONLINE"
    values["RetrieveURL"] = _retrieve_url(match, base)
    # F.2.2: attributes in ascending tag order.
    return {name: _attribute(tag, vr, values[keyword])
            for tag, name, vr, keyword in sorted(_dictionary(k) for k in values)}


@functools.lru_cache(maxsize=1024)
def _dictionary(keyword):
    """(tag, its DICOM JSON name, VR, keyword): pydicom's dictionary lookups were a
    sixth of a one-answer search's CPU, asked again for every attribute of every answer."""
    tag = tag_for_keyword(keyword)
    return tag, f"{tag:08X}", dictionary_VR(keyword), keyword


# Value representations whose one value pydicom's DICOM JSON passes through as the
# text it is given (UI once stripped of spaces, IS as the integer it spells). Building
# them here, without a pydicom element each, is most of what a search of many answers
# spends on its answer (docs/benchmarks.md). Anything else (several values, a decimal,
# odd spacing) is still pydicom's.
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UR", "UT"})
_INTEGER = re.compile(r"-?[0-9]{1,9}")
_US = re.compile(r"[0-9]{1,5}")


def _attribute(tag, vr, text):
    """DICOM JSON of an attribute from its text in the index (values joined by backslashes)."""
    if not text:
        return {"vr": vr}
    if "\\" not in text:
        if vr in _TEXT_VRS or (vr == "UI" and text == text.strip()):
            return {"vr": vr, "Value": [text]}
        if vr == "PN" and "=" not in text:
            return {"vr": vr, "Value": [{"Alphabetic": text}]}
        if (vr == "IS" and _INTEGER.fullmatch(text)) or (vr == "US" and _US.fullmatch(text) and int(text) < 65536):
            return {"vr": vr, "Value": [int(text)]}
    try:
        element = DataElement(tag, vr, text)
    except (ValueError, TypeError, OverflowError) as error:
        return unparsed_json(vr, text.split("\\"), error)
    return element_json(element)


def _retrieve_url(match, base):
    row = match.row
    if match.level == Level.STUDY:
        return f"{base}/{row.study_instance_uid}"
    if match.level == Level.SERIES:
        return f"{base}/{row.study.study_instance_uid}/series/{row.series_instance_uid}"
    series = row.series
    return (f"{base}/{series.study.study_instance_uid}/series/{series.series_instance_uid}"
            f"/instances/{row.sop_instance_uid}")
