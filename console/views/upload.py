"""Upload: DICOM files or ZIPs of them, through the ingest path (ingest.store, ingest.store_zip).

The page's script sends each file on its own (POST /ui/upload/file, the raw
bytes, with the session and the CSRF token) and shows its progress; without
JavaScript the page is a plain multi-file form. Either way each file goes
through what POST /instances does: a ZIP member by member, anything else as one
DICOM file, refused with the same words.
"""

import logging
from urllib.parse import unquote

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render

from archive import ingest
from archive.errors import ArchiveError
from archive.roles import UPLOADER
from archive.spool import spool
from console import search
from console.access import JSON, audit, console_view, refusal_words
from console.templatetags.console import person

log = logging.getLogger("pacsweb.console")

STORED, ALREADY, REJECTED = "Stored", "Already stored", "Rejected"


def store_file(request, stream, name):
    """Store one uploaded file (a DICOM file or a ZIP); one result per DICOM file in it:
    {"name", "member", "status", "detail", "study", "study_label"}."""
    results = _store_file(request, stream, name)
    labels = search.labels(r["study"] for r in results)
    for result in results:
        label = labels.get(result["study"])
        result["study_label"] = study_words(label) if label else ""
    return results


def study_words(label):
    """DOE, JOHN · 2024-01-05 CT CHEST: a stored study as the page names it."""
    return " · ".join(w for w in (person(label["patient"]) if label["patient"] else "", label["what"]) if w)


def _store_file(request, stream, name):
    origin = ingest.Origin.http(request.META.get("REMOTE_ADDR", ""), request.user.get_username())
    head = stream.read(4)
    stream.seek(0)
    if not head:
        return [_rejected(name, "the file is empty")]
    try:
        if head == ingest.ZIP_MAGIC:
            return _zip_results(name, ingest.store_zip(stream, origin))
        return [_result(name, ingest.store(stream, origin))]
    except ArchiveError as error:
        return [_rejected(name, refusal_words(error))]
    except Exception:
        log.exception("console upload of %s failed", name)
        return [_rejected(name, "the server could not store it (the error was logged)")]


def _result(name, result, member=""):
    status = STORED if result.status == ingest.SUCCESS else ALREADY
    return {"name": name, "member": member, "status": status, "detail": "", "study": result.study_id}


def _rejected(name, detail, member=""):
    return {"name": name, "member": member, "status": REJECTED, "detail": detail, "study": None}


def _zip_results(name, members):
    results = [_result(f"{name} › {member.name}", member.result, member.name) if member.result
               else _rejected(f"{name} › {member.name}", refusal_words(member.error), member.name)
               for member in members]
    return results or [_rejected(name, "the ZIP archive holds no file")]


def summarize(results):
    counts = {STORED: 0, ALREADY: 0, REJECTED: 0}
    studies = {}
    for result in results:
        counts[result["status"]] += 1
        if result["study"] and result["study"] not in studies:
            studies[result["study"]] = result.get("study_label", "")
    return {"stored": counts[STORED], "already": counts[ALREADY], "rejected": counts[REJECTED],
            "studies": list(studies), "named_studies": list(studies.items()),
            "failures": [r for r in results if r["status"] == REJECTED]}


@console_view(GET=UPLOADER, POST=UPLOADER)
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


@console_view(kind=JSON, GET=None, POST=UPLOADER)
def upload_file(request):
    """One file from the page's script: the request body; its name in X-File-Name."""
    name = unquote(request.headers.get("X-File-Name", "file"))[:300]
    try:
        with spool(request, settings.MAX_UPLOAD_BYTES) as body:
            results = store_file(request, body, name)
    except ArchiveError as error:
        results = [_rejected(name, refusal_words(error))]
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
