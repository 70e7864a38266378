"""Failures → HTTP answers, in one place.

The body has the members of Orthanc's error answers (HttpError, HttpStatus,
Message, Method, Uri, OrthancError, OrthancStatus) plus Details with what went
wrong in words a user can act on.
"""

import functools
import logging

from django.http import JsonResponse
from django.views import defaults

from archive.errors import (
    BodyTooLarge, BodyTooSlow, ConflictingInstance, CredentialsRefused, DatabaseBusy, InvalidOrder, MissingFile,
    RejectedInstance, StorageError, StorageFull, UnknownOrder, UnsupportedEncoding,
)

log = logging.getLogger(__name__)

REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large",
           415: "Unsupported Media Type", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable", 507: "Insufficient Storage"}

# Orthanc's error codes (OrthancFramework Enumerations.h) for the failures we share.
ORTHANC_ERRORS = {
    400: (15, "Bad file format"),
    401: (29, "Unauthorized"),
    403: (29, "Unauthorized"),
    404: (17, "Unknown resource"),
    # Orthanc has no error code of its own for a method a route does not take
    # (1.10 answers an empty 405 with Allow); "Bad request" is its nearest one.
    405: (8, "Bad request"),
    409: (15, "Bad file format"),
    503: (-1, "Database is busy"),
    507: (14, "Error in the storage area"),
    500: (-1, "Internal error"),
}

# Pages with their own error pages (the console, the Django admin): everything
# else is an API route and answers errors as Orthanc's JSON.
PAGE_PREFIXES = ("/ui/", "/admin/", "/static/", "/ohif/")


def error_response(request, status, details, orthanc=None):
    code, name = orthanc or ORTHANC_ERRORS.get(status, (-1, REASONS.get(status, "Error")))
    body = {
        "HttpError": REASONS.get(status, "Error"),
        "HttpStatus": status,
        "Message": name,
        "Details": details,
        "Method": request.method,
        "Uri": request.path,
        "OrthancError": name,
        "OrthancStatus": code,
    }
    return JsonResponse(body, status=status)


def status_for(error):
    """The HTTP status and the words for an exception raised below the views."""
    if isinstance(error, CredentialsRefused):
        return 401, str(error)
    if isinstance(error, ConflictingInstance):
        return 409, str(error)
    if isinstance(error, RejectedInstance):
        return 400, str(error)
    if isinstance(error, MissingFile):
        return 404, "the stored file of this resource is missing from the storage area"
    if isinstance(error, StorageError):
        return 507, str(error)
    if isinstance(error, DatabaseBusy):
        return 503, "the database is busy with concurrent writers; retry shortly"
    if isinstance(error, BodyTooLarge):
        return 413, str(error)
    if isinstance(error, BodyTooSlow):
        return 408, str(error)
    if isinstance(error, UnsupportedEncoding):
        return 415, str(error)
    if isinstance(error, InvalidOrder):
        return 400, str(error)
    if isinstance(error, UnknownOrder):
        return 404, str(error)
    return None


def rest_view(view):
    """Map the archive's exceptions to HTTP answers for a REST view."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except Exception as error:
            mapped = status_for(error)
            if mapped is None:
                raise
            status, details = mapped
            # A bounded archive that is full: Orthanc's FullStorage, not a failing disk.
            orthanc = (19, "The file storage is full") if isinstance(error, StorageFull) else None
            response = error_response(request, status, details, orthanc=orthanc)
            if isinstance(error, DatabaseBusy):
                response["Retry-After"] = str(DatabaseBusy.retry_after)
            return response

    return wrapper


def not_found(request, what):
    return error_response(request, 404, f"{what} is not in the archive")


def is_api_path(path):
    return not (path + "/").startswith(PAGE_PREFIXES) and path != "/"


def not_allowed(request, response):
    """Django's 405 (require_http_methods) as Orthanc's JSON, keeping its Allow header."""
    allowed = response.get("Allow", "")
    answer = error_response(request, 405, f"{request.method} is not allowed on this route; it takes {allowed}")
    answer["Allow"] = allowed
    return answer


def bad_request(request, exception=None):
    """handler400: what Django refuses before a view (a request it finds suspicious, a
    form body past DATA_UPLOAD_MAX_MEMORY_SIZE)."""
    if not is_api_path(request.path):
        return defaults.bad_request(request, exception)
    return error_response(request, 400, f"the request cannot be read: {exception or 'bad request'}")


def permission_denied(request, exception=None):
    """handler403: a PermissionDenied raised below a view."""
    if not is_api_path(request.path):
        return defaults.permission_denied(request, exception)
    return error_response(request, 403, str(exception or "not allowed"))


def page_not_found(request, exception=None):
    """handler404: a path no route matches (Orthanc: 404 "Unknown resource")."""
    if not is_api_path(request.path):
        return defaults.page_not_found(request, exception)
    return error_response(request, 404, f"no route matches {request.method} {request.path}")


def server_error(request):
    """handler500: an exception no mapping knows (logged by Django with its traceback)."""
    if not is_api_path(request.path):
        return defaults.server_error(request)
    return error_response(request, 500, "an unexpected error occurred; the server log has the details")
