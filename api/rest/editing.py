"""Orthanc's /modify and /anonymize routes at every level.

An instance answers the edited file (nothing is stored); a series, study or patient
is edited by a ResourceModification job, run here (Orthanc's default, synchronous)
or by a worker of any node ("Asynchronous": true).
"""

import json
import uuid

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from archive import audit, editing, resources
from archive.models import Level
from api.rest.errors import error_response, rest_view
from api.rest.jobs import BadJobOptions, job_options, submitted
from cluster import jobs, modification
from cluster.models import JobState


def _username(request):
    user = getattr(request, "user", None)
    return getattr(user, "api_token_name", None) or getattr(user, "username", "") or ""


@csrf_exempt
@require_http_methods(["POST"])
@rest_view
def edit(request, plural, public_id, anonymize=False):
    level = resources.LEVEL_OF_PLURAL[plural]
    try:
        body = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return error_response(request, 400, f"the body is not valid JSON: {error}")
    try:
        change = editing.parse_request(body, level, anonymize)
        asynchronous, priority = job_options(body)
        instance_ids = editing.source_instances(level, public_id)
        editing.check_transcode(change, instance_ids)
    except editing.UnknownResource:
        return error_response(request, 404, f"{level.lower()} {public_id} is not in the archive",
                              orthanc=(17, "Unknown resource"))
    except editing.InvalidEdit as error:
        return error_response(request, 400, str(error), orthanc=error.orthanc)
    except BadJobOptions as error:
        return error_response(request, 400, str(error))
    username = _username(request)
    if level == Level.INSTANCE:
        return _edited_file(request, public_id, change, username)
    remapped = [] if anonymize else editing.source_uids(level, public_id, change)
    job = jobs.submit(modification.TYPE, modification.params(level, public_id, change, instance_ids, remapped,
                                                              username),
                      priority=priority, run_now=not asynchronous)
    if asynchronous:
        return submitted(job)
    if job.state != JobState.SUCCESS:
        status = 400 if job.error_code in (3, 5, 8) else 500
        return error_response(request, status, job.error_details, orthanc=(job.error_code, job.error_description))
    return JsonResponse(job.content)


def _edited_file(request, public_id, change, username):
    seed = uuid.uuid4().hex
    try:
        data = editing.apply(editing.read_source(public_id), change, seed, Level.INSTANCE)
    except editing.InvalidEdit as error:
        return error_response(request, 400, str(error), orthanc=error.orthanc)
    audit.record("user", username, "anonymize" if change.anonymize else "modify", level=Level.INSTANCE,
                 resource=public_id, details={"source": public_id, "result": "answered as a file, not stored",
                                              "request": change.to_json()})
    response = HttpResponse(data, content_type="application/dicom")
    response["Content-Disposition"] = f'attachment; filename="{public_id}.dcm"'
    return response
