"""ZIP archives and DICOMDIR media over REST (Orthanc's routes).

Synchronous answers stream the ZIP while it is built (archive.archives);
asynchronous ones are jobs whose ZIP lands in the archive area, served by
GET /jobs/{id}/archive from any node.
"""

from django.http import FileResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from archive.roles import VIEWER, allow
from archive import archives, transcode
from archive.resources import LEVEL_OF_PLURAL, MODELS
from api.rest.errors import error_response, rest_view
from archive.storage import MissingFile, get_storage
from cluster import jobs
from api.rest.jobs import BadJobOptions, job_options, parse_body, submitted
from cluster.models import Job


def _answer(request, resources, media, filename):
    """The ZIP now, or a job for it, as the request's options say."""
    try:
        body = parse_body(request) if request.method == "POST" else None
        asynchronous, priority = job_options(body)
        transcode_to = _transcode_option(request, body)
    except BadJobOptions as error:
        return error_response(request, 400, str(error))
    if asynchronous:
        params = {"resources": resources, **({"transcode": transcode_to} if transcode_to else {})}
        job = jobs.submit("Media" if media else "Archive", params, priority=priority)
        return submitted(job)
    try:
        files = archives.entries(resources, media=media)
    except archives.UnknownResource as missing:
        return error_response(request, 404, f"resource {missing} is not in the archive")
    response = StreamingHttpResponse(archives.stream_zip(files, media=media, transcode_to=transcode_to),
                                     content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _transcode_option(request, body):
    """Orthanc's `?transcode=UID` (GET) or `"Transcode": "UID"` (POST body): the syntax every file is written in."""
    value = body.get("Transcode") if isinstance(body, dict) and "Transcode" in body else request.GET.get("transcode")
    if value in (None, ""):
        return None
    if value not in transcode.TARGETS:
        raise BadJobOptions(f"Transcode: {value!r} is not a transfer syntax pacsweb writes "
                            f"({', '.join(sorted(transcode.TARGETS))})")
    return value


@allow(POST=VIEWER)
@csrf_exempt
@require_http_methods(["GET", "POST"])
@rest_view
def resource_archive(request, plural, public_id, media=False):
    level = LEVEL_OF_PLURAL[plural]
    if not MODELS[level].objects.filter(public_id=public_id).exists():
        return error_response(request, 404, f"{level.lower()} {public_id} is not in the archive")
    return _answer(request, [public_id], media, f"{public_id}.zip")


@allow(POST=VIEWER)
@csrf_exempt
@require_http_methods(["POST"])
@rest_view
def create_archive(request, media=False):
    try:
        body = parse_body(request)
    except BadJobOptions as error:
        return error_response(request, 400, str(error))
    resources = body.get("Resources") if isinstance(body, dict) else body
    if not isinstance(resources, list) or not resources or not all(isinstance(r, str) for r in resources):
        return error_response(request, 400, 'expected a list of resource ids to archive in the body: '
                                            '["id", ...] or {"Resources": ["id", ...]}')
    return _answer(request, resources, media, "Archive.zip")


@csrf_exempt
@require_http_methods(["GET"])
@rest_view
def job_archive(request, job_id):
    job = Job.objects.filter(pk=job_id).first()
    if job is None or not job.output:
        details = "job has no such output: archive" if job is None or job.state != "Success" \
            else "the archive of this job has expired (PACS_ARCHIVE_TTL, PACS_ARCHIVE_CACHE_SIZE)"
        return error_response(request, 404, details, orthanc=(7, "Inexistent item"))
    try:
        stream = get_storage().open_archive(job.output)
    except MissingFile:
        return error_response(request, 404, "the archive of this job has expired", orthanc=(7, "Inexistent item"))
    Job.objects.filter(pk=job.pk).update(output_used_at=timezone.now())
    return FileResponse(stream, content_type="application/zip", as_attachment=True, filename="archive.zip")
