"""Upload: DICOM files or ZIPs of them, through the ingest path of POST /instances.

The page's script sends each file on its own (POST /ui/upload/file, the raw
bytes, with the session and the CSRF token) and shows its progress; without
JavaScript the page is a plain multi-file form. Either way each file goes
through what POST /instances does: a ZIP member by member, anything else as one
DICOM file, refused with the same words.
"""

import json
import logging
import zipfile
from urllib.parse import unquote

from django.http import JsonResponse
from django.shortcuts import render

from archive import ingest
from api.rest import instances as rest_instances
from api.rest.bodies import spool
from api.rest.errors import status_for
from console.access import JSON, audit, console_view

log = logging.getLogger("pacsweb.console")

STORED, ALREADY, REJECTED = "Stored", "Already stored", "Rejected"


def store_file(request, stream, name):
    """Store one uploaded file (a DICOM file or a ZIP); one result per DICOM file in it:
    {"name", "status", "detail", "study"}."""
    origin = ingest.Origin(kind="RestApi", remote_ip=request.META.get("REMOTE_ADDR", ""),
                           username=request.user.get_username())
    head = stream.read(4)
    stream.seek(0)
    if not head:
        return [_rejected(name, "the file is empty")]
    try:
        if head == rest_instances.ZIP_MAGIC:
            answer = rest_instances._store_zip(request, stream, origin)
            return _zip_results(name, json.loads(answer.content), _members(stream))
        return [_result(name, ingest.store(stream, origin))]
    except Exception as error:
        mapped = status_for(error)
        if mapped is None:
            log.exception("console upload of %s failed", name)
            return [_rejected(name, "the server could not store it (the error was logged)")]
        return [_rejected(name, mapped[1])]


def _result(name, result):
    status = STORED if result.status == ingest.SUCCESS else ALREADY
    return {"name": name, "status": status, "detail": "", "study": result.study_id}


def _rejected(name, detail):
    return {"name": name, "status": REJECTED, "detail": detail, "study": None}


def _members(stream):
    """The names of the files of a ZIP, in the order POST /instances answers them."""
    try:
        stream.seek(0)
        with zipfile.ZipFile(stream) as archive:
            return [member.filename for member in archive.infolist() if not member.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def _zip_results(name, answer, members):
    if isinstance(answer, dict):  # the ZIP itself could not be read
        return [_rejected(name, answer.get("Details") or "the ZIP archive cannot be read")]
    results = []
    for index, entry in enumerate(answer):
        member = entry.get("Member") or (members[index] if index < len(members) else entry.get("ID", ""))
        if entry.get("Status") == "Failure":
            results.append(_rejected(f"{name} › {member}", entry.get("Details", "")))
        else:
            results.append({"name": f"{name} › {member}",
                            "status": STORED if entry["Status"] == ingest.SUCCESS else ALREADY,
                            "detail": "", "study": entry.get("ParentStudy")})
    if not results:
        results.append(_rejected(name, "the ZIP archive holds no file"))
    return results


def summarize(results):
    counts = {STORED: 0, ALREADY: 0, REJECTED: 0}
    studies = []
    for result in results:
        counts[result["status"]] += 1
        if result["study"] and result["study"] not in studies:
            studies.append(result["study"])
    return {"stored": counts[STORED], "already": counts[ALREADY], "rejected": counts[REJECTED],
            "studies": studies, "failures": [r for r in results if r["status"] == REJECTED]}


@console_view()
def upload_page(request):
    """The upload page; its form's POST (no JavaScript) stores every chosen file."""
    results = None
    if request.method == "POST":
        files = request.FILES.getlist("files")
        results = []
        for uploaded in files:
            with uploaded:
                stored = store_file(request, uploaded.file, uploaded.name)
            _audit_store(request, stored)
            results.extend(stored)
        if not files:
            results = []
    return render(request, "console/upload.html", {
        "section": "upload", "results": results, "summary": summarize(results) if results is not None else None,
    })


@console_view(kind=JSON)
def upload_file(request):
    """One file from the page's script: the request body; its name in X-File-Name."""
    name = unquote(request.headers.get("X-File-Name", "file"))[:300]
    try:
        with spool(request) as body:
            results = store_file(request, body, name)
    except Exception as error:
        mapped = status_for(error)
        if mapped is None:
            raise
        results = [_rejected(name, mapped[1])]
    _audit_store(request, results)
    return JsonResponse({"results": results})


def _audit_store(request, results):
    """One audit event per uploaded file, as POST /instances records one per request."""
    counts = summarize(results)
    studies = counts["studies"]
    single = studies[0] if len(studies) == 1 else ""
    audit(request, "store", level="Study" if single else "", resource=single,
          status=400 if counts["rejected"] else 200, file=results[0]["name"].split(" › ")[0] if results else "",
          stored=counts["stored"], already=counts["already"], rejected=counts["rejected"], studies=studies[:20])
