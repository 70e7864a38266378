"""Orthanc-compatible resource routes: lists, details, children, parents, statistics,
deletion, /tools/find and /changes."""

import json

from django.db.models import Count, Sum
from pydicom.datadict import tag_for_keyword
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from archive.roles import VIEWER, allow, checks_credentials, remembered_credentials
from archive import annotations, labels, query, resources
from archive.deletion import UnknownResource, delete_resource
from archive.models import Attachment, Change, Instance, Level
from api.rest.errors import error_response, rest_view

# Orthanc reads a level in either number ("Study" or "Studies").
LEVEL_NAMES = {"patient": Level.PATIENT, "patients": Level.PATIENT, "study": Level.STUDY, "studies": Level.STUDY,
               "series": Level.SERIES, "instance": Level.INSTANCE, "instances": Level.INSTANCE}


def _level(plural):
    return resources.LEVEL_OF_PLURAL[plural]


def _int_param(request, name):
    value = request.GET.get(name)
    if value is None:
        return None
    if not value.isdigit():
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    return int(value)


def _tag_format(request):
    """Orthanc's ?short (main tags keyed by tag) and ?full (by tag, with name and type)."""
    return "short" if "short" in request.GET else "full" if "full" in request.GET else None


def _requested_tags(request):
    """The keywords of Orthanc 1.12's ?requestedTags=A;B (empty without it); ValueError
    names one that is no DICOM keyword."""
    keys = [key for key in request.GET.get("requestedTags", "").split(";") if key]
    unknown = [key for key in keys if tag_for_keyword(key) is None]
    if unknown:
        raise ValueError(f"requestedTags: {', '.join(unknown)} is not a DICOM keyword")
    return keys


def _with_requested(answer, level, keys):
    """Each described resource with its RequestedTags (Orthanc 1.12), when asked."""
    if not keys:
        return answer
    items = answer if isinstance(answer, list) else [answer]
    values = query.requested_values(level, [item["ID"] for item in items], keys)
    for item in items:
        item["RequestedTags"] = values.get(item["ID"], {})
    return answer


def _shaped(answer, form):
    """A described resource (or a list of them) with its main tags in the asked form."""
    if form is None:
        return answer
    if isinstance(answer, list):
        return [_shaped(item, form) for item in answer]
    for key in ("MainDicomTags", "PatientMainDicomTags"):
        if key in answer:
            answer[key] = _tags_by_number(answer[key], form)
    return answer


def _tags_by_number(tags, form):
    shaped = {}
    for keyword, value in tags.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            continue
        key = f"{tag >> 16:04x},{tag & 0xFFFF:04x}"
        shaped[key] = value if form == "short" else {"Name": keyword, "Type": "String", "Value": value}
    return shaped


def _not_found_empty():
    # Orthanc answers an unknown id on a resource's own route with an empty 404.
    return HttpResponse(status=404)


@require_http_methods(["GET"])
@rest_view
def listing(request, plural):
    level = _level(plural)
    try:
        since, limit = _int_param(request, "since") or 0, _int_param(request, "limit")
        requested = _requested_tags(request)
    except ValueError as error:
        return error_response(request, 400, str(error))
    if ("since" in request.GET) != ("limit" in request.GET):
        # Orthanc pages a list only with both: one alone is an error, not a default.
        return error_response(request, 400, "since and limit go together: give both or neither")
    end = None if limit is None else since + limit
    if "expand" in request.GET:
        described = resources.describe_many(level, resources.queryset(level)[since:end])
        return JsonResponse(_shaped(_with_requested(described, level, requested), _tag_format(request)), safe=False)
    ids = resources.MODELS[level].objects.order_by("pk").values_list("public_id", flat=True)[since:end]
    return JsonResponse(list(ids), safe=False)


@checks_credentials("GET")
@csrf_exempt
@require_http_methods(["GET", "DELETE"])
@rest_view
def detail(request, plural, public_id):
    level = _level(plural)
    if request.method == "DELETE":
        try:
            remaining = delete_resource(level, public_id)
        except UnknownResource:
            return _not_found_empty()
        if remaining is None:
            return JsonResponse({"RemainingAncestor": None})
        ancestor_level, ancestor_id = remaining
        return JsonResponse({"RemainingAncestor": {
            "ID": ancestor_id, "Path": f"/{resources.PLURAL[ancestor_level]}/{ancestor_id}", "Type": ancestor_level}})
    try:
        requested = _requested_tags(request)
    except ValueError as error:
        return error_response(request, 400, str(error))
    described = resources.describe_by_id(level, public_id, remembered_credentials(request))
    if described is None:
        return _not_found_empty()
    return JsonResponse(_shaped(_with_requested(described, level, requested), _tag_format(request)))


RELATED = {"patient": Level.PATIENT, "study": Level.STUDY, "studies": Level.STUDY, "series": Level.SERIES,
           "instances": Level.INSTANCE}


def related(request, plural, public_id, other):
    """/{level}/{id}/{children} or /{level}/{id}/{parent}: "series" is both."""
    level, other_level = _level(plural), RELATED[other]
    if resources.ORDER.index(other_level) < resources.ORDER.index(level):
        return parent(request, plural, public_id, other_level)
    if resources.ORDER.index(other_level) > resources.ORDER.index(level) and other != "study" and other != "patient":
        return children(request, plural, public_id, other_level)
    return error_response(request, 404, f"/{plural}/{{id}}/{other} does not exist", orthanc=(17, "Unknown resource"))


@require_http_methods(["GET"])
@rest_view
def children(request, plural, public_id, child_level):
    level = _level(plural)
    row = resources.MODELS[level].objects.filter(public_id=public_id).first()
    if row is None:
        return error_response(request, 404, f"{level.lower()} {public_id} is not in the archive", orthanc=(17, "Unknown resource"))
    try:
        requested = _requested_tags(request)
    except ValueError as error:
        return error_response(request, 400, str(error))
    described = resources.describe_many(child_level, resources.descendants(level, row, child_level))
    return JsonResponse(_shaped(_with_requested(described, child_level, requested), _tag_format(request)), safe=False)


@require_http_methods(["GET"])
@rest_view
def parent(request, plural, public_id, ancestor_level):
    level = _level(plural)
    row = resources.MODELS[level].objects.filter(public_id=public_id).first()
    if row is None:
        return error_response(request, 404, f"{level.lower()} {public_id} is not in the archive", orthanc=(17, "Unknown resource"))
    return JsonResponse(_shaped(resources.describe(ancestor_level, resources.ancestor(level, row, ancestor_level)),
                                _tag_format(request)))


@require_http_methods(["GET"])
@rest_view
def statistics(request, plural, public_id):
    level = _level(plural)
    row = resources.MODELS[level].objects.filter(public_id=public_id).first()
    if row is None:
        return error_response(request, 404, f"{level.lower()} {public_id} is not in the archive", orthanc=(17, "Unknown resource"))
    if level == Level.INSTANCE:
        instances = Instance.objects.filter(pk=row.pk)
    else:
        instances = Instance.objects.filter(**{resources.BY_ANCESTOR[Level.INSTANCE][level]: row.pk})
    counts = instances.aggregate(
        n_instances=Count("pk"), n_series=Count("series", distinct=True), n_studies=Count("series__study", distinct=True))
    size = Attachment.objects.filter(resource_id__in=instances.values("public_id")).aggregate(s=Sum("size"))["s"] or 0
    answer = {"DiskSize": str(size), "DiskSizeMB": size // 2**20, "UncompressedSize": str(size),
              "UncompressedSizeMB": size // 2**20, "DicomDiskSize": str(size), "DicomDiskSizeMB": size // 2**20,
              "DicomUncompressedSize": str(size), "DicomUncompressedSizeMB": size // 2**20}
    if level in (Level.PATIENT, Level.STUDY, Level.SERIES):
        answer["CountInstances"] = counts["n_instances"]
    if level in (Level.PATIENT, Level.STUDY):
        answer["CountSeries"] = counts["n_series"]
    if level == Level.PATIENT:
        answer["CountStudies"] = counts["n_studies"]
    return JsonResponse(answer)


@allow(POST=VIEWER)
@csrf_exempt
@require_http_methods(["POST"])
@rest_view
def find(request):
    """POST /tools/find: Orthanc's search, run by the one query engine."""
    try:
        body = json.loads(request.body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return error_response(request, 400, f"the body is not valid JSON: {error}")
    if not isinstance(body, dict):
        return error_response(request, 400, 'expected an object: {"Level": ..., "Query": {...}}')
    level = LEVEL_NAMES.get(str(body.get("Level", "")).lower())
    if level is None:
        return error_response(request, 400, "Level must be Patient, Study, Series or Instance")
    criteria = body.get("Query")
    if not isinstance(criteria, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in criteria.items()):
        return error_response(request, 400, "Query must map DICOM keywords to strings")
    for name in ("Limit", "Since"):
        if name in body and (not isinstance(body[name], int) or isinstance(body[name], bool) or body[name] < 0):
            return error_response(request, 400, f"{name} must be a non-negative integer")
    for name in ("Expand", "CaseSensitive"):
        if name in body and not isinstance(body[name], bool):
            return error_response(request, 400, f"{name} must be true or false")
    wanted_labels = body.get("Labels", [])
    if not isinstance(wanted_labels, list) or not all(isinstance(name, str) for name in wanted_labels):
        return error_response(request, 400, "Labels must be a list of label names")
    constraint = body.get("LabelsConstraint", "All")
    if constraint not in labels.CONSTRAINTS:
        return error_response(request, 400, "LabelsConstraint must be All, Any or None")
    try:
        for name in wanted_labels:
            labels.check(name)
    except labels.InvalidLabel as error:
        return error_response(request, 400, str(error), orthanc=(3, "Parameter out of range"))
    requested = body.get("RequestedTags", [])
    if not isinstance(requested, list) or not all(isinstance(t, str) for t in requested):
        return error_response(request, 400, "RequestedTags must be a list of DICOM keywords")
    try:
        matches, _ = query.find(
            query.Query(level=level, criteria=criteria, case_sensitive_names=body.get("CaseSensitive", False),
                        limit=query.result_limit(body.get("Limit")), offset=body.get("Since", 0),
                        labels=tuple(wanted_labels), labels_constraint=constraint),
            return_keys=requested,
        )
    except query.InvalidQuery as error:
        return error_response(request, 400, str(error))
    if not body.get("Expand"):
        return JsonResponse([m.row.public_id for m in matches], safe=False)
    rows = resources.queryset(level).filter(pk__in=[m.row.pk for m in matches])
    described = {d["ID"]: d for d in resources.describe_many(level, rows)}
    answer = []
    for match in matches:
        item = described[match.row.public_id]
        if requested:
            item["RequestedTags"] = {k: match.values.get(k, "") for k in requested}
        answer.append(item)
    return JsonResponse(answer, safe=False)


@csrf_exempt
@require_http_methods(["GET", "DELETE"])
@rest_view
def changes(request):
    if request.method == "DELETE":
        Change.objects.all().delete()
        return JsonResponse({})
    if "last" in request.GET:
        # Orthanc's ?last: the newest change only, whatever since and limit say.
        newest = Change.objects.order_by("-seq").first()
        rows = [newest] if newest else []
        return JsonResponse({"Changes": [_change(c) for c in rows], "Done": True, "Last": newest.seq if newest else 0})
    try:
        since = _int_param(request, "since") or 0
        limit = _int_param(request, "limit")
    except ValueError as error:
        return error_response(request, 400, str(error))
    limit = 100 if limit is None else min(limit, 10000)
    rows = list(Change.objects.filter(seq__gt=since).order_by("seq")[: limit + 1])
    done = len(rows) <= limit
    rows = rows[:limit]
    last = rows[-1].seq if rows else (Change.objects.order_by("-seq").values_list("seq", flat=True).first() or 0)
    return JsonResponse({
        "Changes": [_change(c) for c in rows],
        "Done": done,
        "Last": last,
    })


def _change(change):
    return {
        "ChangeType": change.change_type, "Date": resources.orthanc_time(change.date), "ID": change.public_id,
        "Path": f"/{resources.PLURAL[change.level]}/{change.public_id}", "ResourceType": change.level,
        "Seq": change.seq,
    }


@csrf_exempt
@require_http_methods(["GET", "PUT"])
@rest_view
def protected(request, public_id):
    """Orthanc's protection of a patient against recycling: "0" or "1"."""
    if request.method == "PUT":
        flag = {"0": False, "1": True, "false": False, "true": True}.get(request.body.decode("utf-8", "replace").strip().lower())
        if flag is None:
            return error_response(request, 400, "Boolean value expected: 0 or 1")
        try:
            annotations.set_protected(public_id, flag)
        except annotations.UnknownResource:
            return _not_found_empty()
        return HttpResponse("", content_type="text/plain")
    row = resources.MODELS[Level.PATIENT].objects.filter(public_id=public_id).values_list("is_protected", flat=True)
    if not row:
        return _not_found_empty()
    return HttpResponse("1" if row[0] else "0", content_type="text/plain")
