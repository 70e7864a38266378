"""Failures → HTTP answers, in one place.

The body has the members of Orthanc's error answers (HttpError, HttpStatus,
Message, Method, Uri, OrthancError, OrthancStatus) plus Details with what went
wrong in words a user can act on.
"""

import functools
import logging

from django.http import JsonResponse

from archive.errors import (
    BodyTooLarge, BodyTooSlow, ConflictingInstance, DatabaseBusy, InvalidOrder, MissingFile, RejectedInstance,
    StorageError, UnknownOrder,
)

log = logging.getLogger(__name__)

REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 413: "Payload Too Large", 415: "Unsupported Media Type",
           500: "Internal Server Error", 503: "Service Unavailable", 507: "Insufficient Storage"}

# Orthanc's error codes (OrthancFramework Enumerations.h) for the failures we share.
ORTHANC_ERRORS = {
    400: (15, "Bad file format"),
    404: (17, "Unknown resource"),
    409: (15, "Bad file format"),
    503: (-1, "Database is busy"),
    507: (14, "Error in the storage area"),
}


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
            response = error_response(request, status, details)
            if isinstance(error, DatabaseBusy):
                response["Retry-After"] = str(DatabaseBusy.retry_after)
            return response

    return wrapper


def not_found(request, what):
    return error_response(request, 404, f"{what} is not in the archive")
