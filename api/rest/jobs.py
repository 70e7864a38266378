"""Orthanc's /jobs routes, cluster-wide: any node lists and acts on every job."""

import json

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from archive.resources import orthanc_time
from api.rest.errors import error_response, rest_view
from cluster import jobs
from cluster.models import FINISHED, Job

ACTIONS = {"cancel": jobs.cancel, "pause": jobs.pause, "resume": jobs.resume, "resubmit": jobs.resubmit}


class BadJobOptions(Exception):
    pass


def job_options(body, synchronous_by_default=True):
    """(asynchronous, priority) from Orthanc's "Synchronous" / "Asynchronous" / "Priority"."""
    if not isinstance(body, dict):
        return not synchronous_by_default, 0
    asynchronous = not synchronous_by_default
    if "Synchronous" in body:
        if not isinstance(body["Synchronous"], bool):
            raise BadJobOptions('"Synchronous" must be true or false')
        asynchronous = not body["Synchronous"]
    if "Asynchronous" in body:
        if not isinstance(body["Asynchronous"], bool):
            raise BadJobOptions('"Asynchronous" must be true or false')
        asynchronous = body["Asynchronous"]
    priority = body.get("Priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise BadJobOptions('"Priority" must be a whole number')
    return asynchronous, priority


def submitted(job):
    """Orthanc's answer to an asynchronous request."""
    return JsonResponse({"ID": job.id, "Path": f"/jobs/{job.id}"})


def describe(job):
    out = {
        "ID": job.id,
        "Type": job.type,
        "State": job.state,
        "Progress": job.progress,
        "Priority": job.priority,
        "CreationTime": orthanc_time(job.created_at) + job.created_at.strftime(".%f"),
        "EffectiveRuntime": round(job.runtime, 3),
        "ErrorCode": job.error_code,
        "ErrorDescription": job.error_description,
        "ErrorDetails": job.error_details,
        "Content": job.content,
        "Timestamp": orthanc_time(job.heartbeat_at or job.created_at),
        # Where the job runs or ran: pacsweb jobs belong to the cluster, not a node.
        "Node": job.node,
    }
    if job.completed_at and job.state in FINISHED:
        out["CompletionTime"] = orthanc_time(job.completed_at) + job.completed_at.strftime(".%f")
    return out


def _not_found(request, job_id):
    return error_response(request, 404, f"job {job_id} does not exist (or was pruned from the history)",
                          orthanc=(7, "Inexistent item"))


@csrf_exempt
@require_http_methods(["GET"])
@rest_view
def job_list(request):
    rows = Job.objects.order_by("created_at")
    if "expand" in request.GET:
        return JsonResponse([describe(job) for job in rows], safe=False)
    return JsonResponse(list(rows.values_list("id", flat=True)), safe=False)


@csrf_exempt
@require_http_methods(["GET", "DELETE"])
@rest_view
def job_detail(request, job_id):
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return _not_found(request, job_id)
    if request.method == "DELETE":
        # Orthanc 1.12's route: only a finished job leaves the history.
        if job.state not in FINISHED:
            return error_response(request, 400, f"the job is {job.state}: cancel it first",
                                  orthanc=(8, "Bad sequence of calls"))
        jobs.forget(job)
        return JsonResponse({})
    return JsonResponse(describe(job))


@csrf_exempt
@require_http_methods(["POST"])
@rest_view
def job_action(request, job_id, action):
    if action not in ACTIONS:
        return error_response(request, 404, f"unknown job action {action}; expected one of {', '.join(ACTIONS)}")
    if not Job.objects.filter(pk=job_id).exists():
        return _not_found(request, job_id)
    try:
        ACTIONS[action](job_id)
    except jobs.NotAllowed as refused:
        return error_response(request, 400, str(refused), orthanc=(8, "Bad sequence of calls"))
    return JsonResponse({})


def parse_body(request):
    """The JSON body of a request, or None when empty; BadJobOptions when not JSON."""
    raw = request.body
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadJobOptions(f"the body is not valid JSON: {error}")

