"""Bounds on request bodies, per route class, checked before anything reads them.

Uploads (POST /instances, STOW-RS, the console's upload, attachments) may be as
large as PACS_MAX_UPLOAD_MB and are spooled to disk as they arrive (with the same
bound enforced while reading, whatever Content-Length said: archive.spool).
Every other body is JSON, a form or a short text that a view reads whole into
memory, so it gets PACS_MAX_REQUEST_KB: a 600 MB JSON body took a worker to
6.7 GB of memory before this. A body over its bound is refused with 413 from the
Content-Length alone, before a byte of it is read, and before authentication
(which would otherwise cost a password check per attempt). A chunked body has no
Content-Length: Django then reads none of it, except for the upload routes,
whose spooling stops at the bound.
"""

import re

from django.conf import settings
from django.http import JsonResponse

from archive import space

UPLOAD_ROUTES = re.compile(
    r"^/instances$"
    r"|^/dicom-web/studies(/[^/]+)?$"
    r"|^/ui/upload/file$"
    r"|^/(patients|studies|series|instances)/[^/]+/attachments/[^/]+$"
)


def limit_for(request):
    """The largest body (bytes) the request's route accepts, and the setting that says so."""
    if UPLOAD_ROUTES.match(request.path_info):
        return settings.MAX_UPLOAD_BYTES, f"PACS_MAX_UPLOAD_MB ({settings.MAX_UPLOAD_BYTES // 2**20} MB)"
    return settings.MAX_REQUEST_BYTES, f"PACS_MAX_REQUEST_KB ({settings.MAX_REQUEST_BYTES // 1024} KB)"


class BodyLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _refusal(request, 400, "Content-Length is not a number")
        limit, setting = limit_for(request)
        if length > limit:
            return _refusal(request, 413, f"the body ({length} bytes) is larger than {setting} allows on {request.path_info}")
        # A full disk: the database's reserve goes before anything opens a connection,
        # so that deleting (how space is freed) still works (archive/space.py).
        space.release_if_full()
        return self.get_response(request)


def _refusal(request, status, details):
    reason = {400: "Bad Request", 413: "Payload Too Large"}[status]
    # The members of Orthanc's error answers (api/rest/errors.py), without importing a transport.
    return JsonResponse({"HttpError": reason, "HttpStatus": status, "Message": reason, "Details": details,
                         "Method": request.method, "Uri": request.path}, status=status)
