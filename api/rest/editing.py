"""Orthanc's editing routes: /modify and /anonymize at every level, /studies/{id}/split
and /merge, /tools/bulk-modify, bulk-anonymize and bulk-delete.

An instance's /modify and /anonymize answer the edited file (nothing is stored);
everything else is a ResourceModification job, run here (Orthanc's default,
synchronous) or by a worker of any node ("Asynchronous": true).
"""

import json
import uuid

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from archive import audit, creation, deletion, editing, ingest, resources
from archive.models import Level
from archive.roles import UPLOADER, allow
from api.rest.errors import error_response, rest_view
from api.rest.instances import _describe as describe_stored
from api.rest.jobs import BadJobOptions, job_options, submitted
from cluster import modification
from cluster.models import JobState


def editing_view(view):
    """JSON body in, the editing errors mapped to Orthanc's answers."""

    @rest_view
    def wrapper(request, *args, **kwargs):
        try:
            body = json.loads(request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            return error_response(request, 400, f"the body is not valid JSON: {error}")
        try:
            return view(request, body, *args, **kwargs)
        except editing.UnknownResource as error:
            return error_response(request, 404, f"resource {error} is not in the archive",
                                  orthanc=(17, "Unknown resource"))
        except editing.InvalidEdit as error:
            return error_response(request, 400, str(error), orthanc=error.orthanc)
        except BadJobOptions as error:
            return error_response(request, 400, str(error))

    return csrf_exempt(require_http_methods(["POST"])(wrapper))


def _username(request):
    user = getattr(request, "user", None)
    return getattr(user, "api_token_name", None) or getattr(user, "username", "") or ""


@editing_view
def edit(request, body, plural, public_id, anonymize=False):
    level = resources.LEVEL_OF_PLURAL[plural]
    change = editing.parse_request(body, level, anonymize)
    job_options(body)
    instance_ids = editing.source_instances(level, public_id)
    editing.check_transcode(change, instance_ids, level)
    if level == Level.INSTANCE:
        return _edited_file(request, public_id, change)
    remapped = [] if anonymize else editing.source_uids(level, public_id, change)
    plan = editing.Plan(change, instance_ids, level, remapped)
    return _run(request, body, plan, "modify", public_id)


@editing_view
def split(request, body, public_id):
    return _run(request, body, editing.plan_split(public_id, body), "split", public_id)


@editing_view
def merge(request, body, public_id):
    return _run(request, body, editing.plan_merge(public_id, body), "merge", public_id)


@editing_view
def bulk(request, body, anonymize=False):
    plan = editing.plan_bulk(body, anonymize)
    editing.check_transcode(plan.edit, plan.instances)
    return _run(request, body, plan, "bulk", None)


@editing_view
def bulk_delete(request, body):
    """Delete every resource named; the unknown ones are skipped (as Orthanc)."""
    names = body.get("Resources") if isinstance(body, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise editing.InvalidEdit("List of strings expected in field: Resources", orthanc=(15, "Bad file format"))
    for public_id in names:
        for level in resources.ORDER:
            try:
                deletion.delete_resource(level, public_id)
                break
            except deletion.UnknownResource:
                continue
    return HttpResponse(b"", content_type="text/plain")


@allow(POST=UPLOADER)
@editing_view
def create_dicom(request, body):
    origin = ingest.Origin.http(request.META.get("REMOTE_ADDR", ""), _username(request))
    result = creation.create(body, origin)
    if isinstance(result, list):
        # A Content list made a series: Orthanc answers the series, not its instances.
        series = result[0].series_id
        return JsonResponse({"ID": series, "Path": f"/series/{series}", "Status": "Success"})
    return JsonResponse(describe_stored(result))


def _run(request, body, plan, kind, resource):
    asynchronous, priority = job_options(body)
    job = modification.submit(plan, kind, resource, _username(request), asynchronous, priority)
    if asynchronous:
        return submitted(job)
    if job.state != JobState.SUCCESS:
        status = 400 if job.error_code in (3, 5, 8) else 404 if job.error_code == 17 else 500
        return error_response(request, status, job.error_details, orthanc=(job.error_code, job.error_description))
    return JsonResponse(job.content)


def _edited_file(request, public_id, change):
    seed = uuid.uuid4().hex
    data = editing.apply(editing.read_source(public_id), change, seed, Level.INSTANCE)
    audit.record("user", _username(request), "anonymize" if change.anonymize else "modify", level=Level.INSTANCE,
                 resource=public_id, details={"source": public_id, "result": "answered as a file, not stored",
                                              "request": change.to_json()})
    response = HttpResponse(data, content_type="application/dicom")
    response["Content-Disposition"] = f'attachment; filename="{public_id}.dcm"'
    return response
