"""POST /instances and GET /instances/{id}/file (Orthanc-compatible)."""

from django.conf import settings
from django.http import FileResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from archive.roles import UPLOADER, allow, checks_credentials, remembered_credentials
from archive import ingest, resources
from api.rest.bodies import spool, upload_origin
from api.rest.errors import error_response, not_found, rest_view, status_for
from api.rest.resources import listing
from archive.storage import get_storage

@checks_credentials("POST")
@allow(POST=UPLOADER)
@csrf_exempt
@require_http_methods(["GET", "POST"])
def instances(request):
    """GET lists instances (Orthanc's /instances); POST stores."""
    if request.method == "GET":
        return listing(request, "instances")
    return upload(request)


@rest_view
def upload(request):
    """Store the body: one DICOM file (or bare data set), a ZIP archive of them,
    or the files of an HTML form (multipart/form-data), each file or ZIP
    through the one ingest path."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > settings.MAX_UPLOAD_BYTES:
        return error_response(request, 413, f"the body is larger than PACS_MAX_UPLOAD_MB ({settings.MAX_UPLOAD_BYTES // 2**20} MB)")
    origin = upload_origin(request)
    if request.content_type == "multipart/form-data":
        return _form_upload(request, origin)
    with spool(request) as body:
        if body.read(4) == ingest.ZIP_MAGIC:
            body.seek(0)
            return _zip_answer(ingest.store_zip(body, origin))
        body.seek(0)
        result = ingest.store(body, origin)
    return JsonResponse(_describe(result))


def _form_upload(request, origin):
    # Orthanc stores each file of the form and answers 200 with an empty body;
    # pacsweb answers what a ZIP gets: a description of each stored instance.
    try:
        files = [uploaded for name in request.FILES for uploaded in request.FILES.getlist(name)]
    except MultiPartParserError as error:
        return error_response(request, 400, f"the multipart/form-data body cannot be read: {error}")
    if not files:
        return error_response(request, 400, "the form holds no file")
    members = []
    for uploaded in files:
        with uploaded:
            if uploaded.read(4) == ingest.ZIP_MAGIC:
                uploaded.seek(0)
                members.extend(ingest.store_zip(uploaded, origin))
                continue
            uploaded.seek(0)
            try:
                members.append(ingest.ZipMember(uploaded.name, result=ingest.store(uploaded, origin)))
            except ingest.RejectedInstance as error:
                members.append(ingest.ZipMember(uploaded.name, error=error))
    return _zip_answer(members)


def _zip_answer(members):
    # Orthanc leaves out what is no DICOM instance (a README, the DICOMDIR) and
    # answers 200 with the stored members. It also silently drops the members it
    # refuses (1.10): a script cannot tell that part of its upload was lost.
    # pacsweb adds an entry for each refused instance, and answers 400 when any
    # was refused (the good members stay stored).
    members = [member for member in members if not member.skipped]
    answers = [_describe(member.result) if member.result else _failure(member.name, (status_for(member.error) or (500, str(member.error)))[1])
               for member in members]
    failed = any(member.error for member in members)
    return JsonResponse(answers, safe=False, status=400 if failed else 200)


def _describe(result):
    return {
        "ID": result.instance_id,
        "ParentPatient": result.patient_id,
        "ParentSeries": result.series_id,
        "ParentStudy": result.study_id,
        "Path": f"/instances/{result.instance_id}",
        "Status": result.status,
    }


def _failure(name, details):
    return {"Member": name, "Status": "Failure", "Details": details}


@checks_credentials("GET")
@require_GET
@rest_view
def file(request, public_id):
    """The stored DICOM file, streamed unchanged."""
    attachment = resources.dicom_file(public_id, remembered_credentials(request))
    if attachment is None:
        return not_found(request, f"instance {public_id}")
    response = FileResponse(get_storage().open(attachment["storage_key"]), content_type="application/dicom")
    response["Content-Length"] = str(attachment["size"])
    response["ETag"] = f'"{attachment["md5"]}"'
    response["Content-Disposition"] = f'filename="{public_id}.dcm"'
    return response
