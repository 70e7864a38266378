"""HTTP as Orthanc speaks it, on every API route (not the console's pages).

Orthanc splits a URI on "/" and drops the empty parts, so `//patients`,
`/patients/` and `/patients` are one route; clients rely on it (a base URL
ending in "/" joined with "/patients"). Django's own refusals (405 from
require_http_methods) become Orthanc's JSON errors here; 404 and 500 are
pacsweb.urls' handler404/handler500, also in api.rest.errors.
"""

import re

from django.http import HttpResponseNotAllowed

from api.rest import errors

_SLASHES = re.compile(r"/{2,}")


class OrthancHttpMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not errors.is_api_path(_SLASHES.sub("/", request.path_info)):
            return self.get_response(request)
        path = normalise(request.path_info)
        if path != request.path_info:
            request.path = request.path[: len(request.path) - len(request.path_info)] + path
            request.path_info = path
        response = self.get_response(request)
        if isinstance(response, HttpResponseNotAllowed):
            return errors.not_allowed(request, response)
        return response


def normalise(path):
    """The path without empty segments, as Orthanc routes it: `//a//b/` is `/a/b`."""
    return "/" + "/".join(part for part in path.split("/") if part)
