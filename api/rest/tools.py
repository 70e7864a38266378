"""Orthanc's /tools/... routes beyond find and archives, /plugins and /exports.

What Orthanc lets a client change for the running process (log levels, the
default encoding, metrics collection) is, in pacsweb, configuration of every
node (PACS_LOG_LEVEL...): a PUT that would change it answers 400 and says where
it is set, and a PUT of the value in force is accepted.
"""

import datetime
import json
import logging
import time

from django.db.models import Count, Sum
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from pydicom.uid import generate_uid

from archive import annotations, query, resources
from archive.models import Attachment, Instance, Level, Patient, Series, Study
from archive.roles import ADMIN, VIEWER, allow
from api.rest import resources as resource_views
from api.rest.errors import error_response, rest_view
from cluster import metrics
from cluster.models import Job, JobState

# What GET /tools lists: the operations under /tools that pacsweb answers.
TOOLS = sorted([
    "accepted-transfer-syntaxes", "bulk-content", "count-resources", "create-archive", "create-media",
    "create-media-extended", "default-encoding", "dicom-echo", "find", "generate-uid", "invalidate-tags",
    "log-level", "log-level-dicom", "log-level-generic", "log-level-http", "log-level-jobs", "log-level-lua",
    "log-level-plugins", "log-level-sqlite", "lookup", "metrics", "metrics-prometheus", "now", "now-local",
])
# Orthanc's log categories and the loggers that carry pacsweb's messages of each.
LOG_CATEGORIES = {"": None, "generic": None, "dicom": "pynetdicom", "http": "django.request", "jobs": "rq.worker",
                  "sqlite": "django.db.backends", "lua": None, "plugins": None}
# Orthanc's verbosities and the logging levels they stand for.
VERBOSITY = {"default": logging.INFO, "verbose": logging.DEBUG, "trace": logging.DEBUG - 5}
LEVEL_OF_NAME = resource_views.LEVEL_NAMES
# The identifier /tools/lookup reads at each level (Orthanc's LookupIdentifierExact).
IDENTIFIER = {Level.PATIENT: "patient_id", Level.STUDY: "study_instance_uid", Level.SERIES: "series_instance_uid",
              Level.INSTANCE: "sop_instance_uid"}


def _text(value):
    return HttpResponse(value, content_type="text/plain")


@require_http_methods(["GET"])
@rest_view
def tools(request):
    return JsonResponse(TOOLS, safe=False)


@require_http_methods(["GET"])
@rest_view
def now(request, local=False):
    """Orthanc's "YYYYMMDDTHHMMSS": in UTC (/tools/now) or the server's time zone (/tools/now-local)."""
    moment = datetime.datetime.now().astimezone() if local else datetime.datetime.now(datetime.timezone.utc)
    return _text(moment.strftime("%Y%m%dT%H%M%S"))


@require_http_methods(["GET"])
@rest_view
def generate_uid_view(request):
    level = request.GET.get("level", "").lower()
    if level not in ("patient", "study", "series", "instance"):
        # Orthanc 1.10 answers an empty 404 without ?level.
        return error_response(request, 400, "?level= must be patient, study, series or instance",
                              orthanc=(3, "Parameter out of range"))
    return _text(generate_uid())


@allow(PUT=ADMIN)
@csrf_exempt
@require_http_methods(["GET", "PUT"])
@rest_view
def default_encoding(request):
    # pydicom reads a data set without Specific Character Set (0008,0005) as
    # Latin-1, Orthanc's default DefaultEncoding.
    if request.method == "PUT" and request.body.decode("utf-8", "replace").strip() != "Latin1":
        return error_response(request, 400, "pacsweb reads data sets without Specific Character Set as Latin1; "
                              "the default encoding cannot be changed", orthanc=(3, "Parameter out of range"))
    return _text("Latin1" if request.method == "GET" else "")


@require_http_methods(["GET"])
@rest_view
def accepted_transfer_syntaxes(request):
    # What the DICOM listener accepts for storage (dicom_listener); REST takes any.
    from pynetdicom import ALL_TRANSFER_SYNTAXES  # noqa: PLC0415 (heavy: loaded where used)

    return JsonResponse(sorted(ALL_TRANSFER_SYNTAXES), safe=False)


@allow(PUT=ADMIN)
@csrf_exempt
@require_http_methods(["GET", "PUT"])
@rest_view
def log_level(request, category=""):
    logger = logging.getLogger(LOG_CATEGORIES[category])
    effective = logger.getEffectiveLevel()
    current = "trace" if effective < logging.DEBUG else "verbose" if effective == logging.DEBUG else "default"
    if request.method == "GET":
        return _text(current)
    wanted = request.body.decode("utf-8", "replace").strip()
    if wanted not in VERBOSITY:
        return error_response(request, 400, f'Verbosity can be "default", "verbose" or "trace": {wanted}',
                              orthanc=(3, "Parameter out of range"))
    if wanted != current:
        # A PUT here would change one process of one node; the level is the
        # configuration of every process (Orthanc's applies to its only one).
        return error_response(request, 400, "the log level is PACS_LOG_LEVEL of each process "
                              "(INFO is default, DEBUG verbose); set it there", orthanc=(3, "Parameter out of range"))
    return _text("")


@allow(POST=ADMIN)
@csrf_exempt
@require_http_methods(["POST"])
@rest_view
def invalidate_tags(request):
    # pacsweb keeps no DICOM-as-JSON summaries: tags are read from the file each time.
    return _text("")


@allow(PUT=ADMIN)
@csrf_exempt
@require_http_methods(["GET", "PUT"])
@rest_view
def metrics_enabled(request):
    if request.method == "PUT" and request.body.strip() not in (b"1", b"true"):
        return error_response(request, 400, "pacsweb always collects its metrics", orthanc=(3, "Parameter out of range"))
    return _text("1" if request.method == "GET" else "")


@require_http_methods(["GET"])
@rest_view
def metrics_prometheus(request):
    """pacsweb's /metrics, preceded by the gauges of Orthanc's names for its dashboards."""
    return HttpResponse(_orthanc_gauges() + metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")


def _orthanc_gauges():
    size = Attachment.objects.aggregate(total=Sum("size"))["total"] or 0
    states = dict(Job.objects.values_list("state").annotate(n=Count("id")))
    gauges = {
        "orthanc_count_patients": Patient.objects.count(), "orthanc_count_studies": Study.objects.count(),
        "orthanc_count_series": Series.objects.count(), "orthanc_count_instances": Instance.objects.count(),
        "orthanc_disk_size_mb": size // 2**20, "orthanc_uncompressed_size_mb": size // 2**20,
        "orthanc_jobs_pending": states.get(JobState.PENDING, 0), "orthanc_jobs_running": states.get(JobState.RUNNING, 0),
        "orthanc_jobs_success": states.get(JobState.SUCCESS, 0), "orthanc_jobs_failed": states.get(JobState.FAILURE, 0),
        "orthanc_jobs_completed": states.get(JobState.SUCCESS, 0) + states.get(JobState.FAILURE, 0),
    }
    # With a timestamp, as Orthanc writes them (clients split "name value time").
    stamp = int(time.time() * 1000)
    return "".join(f"# TYPE {name} gauge\n{name} {value} {stamp}\n" for name, value in gauges.items())


@allow(POST=VIEWER)
@csrf_exempt
@require_http_methods(["POST"])
@rest_view
def lookup(request):
    """The resources whose DICOM identifier (PatientID, Study/Series/SOP Instance UID) is the body."""
    identifier = request.body.decode("utf-8", "replace").strip()
    answer = []
    for level in resources.ORDER:
        for public_id in resources.MODELS[level].objects.filter(**{IDENTIFIER[level]: identifier}) \
                .order_by("pk").values_list("public_id", flat=True):
            answer.append({"ID": public_id, "Path": f"/{resources.PLURAL[level]}/{public_id}", "Type": level})
    return JsonResponse(answer, safe=False)


@allow(POST=VIEWER)
@csrf_exempt
@require_http_methods(["POST"])
@rest_view
def bulk_content(request):
    """{"Resources": [ids of any level], "Level": optional}: each resource described
    (as GET /{level}/{id}), or the resources of Level under them."""
    body = _json(request)
    if not isinstance(body, dict) or not isinstance(body.get("Resources"), list) \
            or not all(isinstance(r, str) for r in body["Resources"]):
        return error_response(request, 400, 'expected {"Resources": ["<id>", ...], "Level": ...}')
    wanted = None
    if "Level" in body:
        wanted = LEVEL_OF_NAME.get(str(body["Level"]).lower())
        if wanted is None:
            return error_response(request, 400, "Level must be Patient, Study, Series or Instance")
    answer, seen = [], set()
    for public_id in body["Resources"]:
        level, row = _find_any(public_id)
        if row is None:
            continue  # Orthanc leaves out the ids it does not know
        if wanted is None or wanted == level:
            rows = [resources.get(level, public_id)]
        elif resources.ORDER.index(wanted) > resources.ORDER.index(level):
            rows = resources.descendants(level, row, wanted)
        else:
            rows = [resources.ancestor(level, row, wanted)]
        for item in resources.describe_many(wanted or level, rows):
            if item["ID"] not in seen:
                seen.add(item["ID"])
                # Orthanc adds each resource's metadata (one query per resource here).
                item["Metadata"] = {name: entry.value for name, entry in
                                    annotations.list_metadata(item["Type"], item["ID"]).items()}
                answer.append(item)
    return JsonResponse(answer, safe=False)


def _find_any(public_id):
    for level in resources.ORDER:
        row = resources.MODELS[level].objects.filter(public_id=public_id).first()
        if row is not None:
            return level, row
    return None, None


@allow(POST=VIEWER)
@csrf_exempt
@require_http_methods(["POST"])
@rest_view
def count_resources(request):
    """Orthanc 1.12.5's count of what /tools/find would answer: {"Count": n}."""
    body = _json(request)
    if not isinstance(body, dict):
        return error_response(request, 400, 'expected an object: {"Level": ..., "Query": {...}}')
    level = LEVEL_OF_NAME.get(str(body.get("Level", "")).lower())
    if level is None:
        return error_response(request, 400, "Level must be Patient, Study, Series or Instance")
    criteria = body.get("Query", {})
    if not isinstance(criteria, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in criteria.items()):
        return error_response(request, 400, "Query must map DICOM keywords to strings")
    try:
        count = query.count(query.Query(level=level, criteria=criteria,
                                        case_sensitive_names=bool(body.get("CaseSensitive", False))))
    except query.InvalidQuery as error:
        return error_response(request, 400, str(error))
    return JsonResponse({"Count": count})


def _json(request):
    try:
        return json.loads(request.body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


@require_http_methods(["GET"])
@rest_view
def plugins(request):
    # No plugins: DICOMweb is built in (at /dicom-web/, where Orthanc's plugin answers).
    return JsonResponse([], safe=False)


@csrf_exempt
@require_http_methods(["GET", "DELETE"])
@rest_view
def exports(request):
    # Orthanc logs exports only with LogExportedResources (false by default);
    # pacsweb's audit trail (/audit, action "export") holds them instead.
    if request.method == "DELETE":
        return JsonResponse({})
    return JsonResponse({"Done": True, "Exports": [], "Last": 0})
