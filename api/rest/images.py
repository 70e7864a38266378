"""Orthanc's image routes of an instance: /preview, /rendered, /frames/{n}/preview|rendered."""

import hashlib

from django.http import HttpResponse
from django.views.decorators.http import require_GET

from archive import render
from archive.models import Attachment
from api.rest.errors import error_response, not_found, rest_view
from archive.storage import get_storage

CACHE_CONTROL = "private, max-age=3600"


@require_GET
@rest_view
def image(request, public_id, frame=0, kind="preview"):
    key = Attachment.objects.filter(resource_id=public_id, name=Attachment.DICOM).values_list("storage_key", flat=True).first()
    if key is None:
        return not_found(request, f"instance {public_id}")
    try:
        rendering = _rendering(request, frame, kind)
    except ValueError as error:
        return error_response(request, 400, str(error))
    # A stored file never changes: the same rendering of it is the same image. Browsers
    # (the console's thumbnails) keep it, for this user only, and revalidate cheaply.
    etag = '"' + hashlib.sha1(f"{key}|{rendering}".encode()).hexdigest() + '"'
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return _cached(HttpResponse(status=304), etag)
    try:
        with get_storage().open(key) as stream:
            data = render.render(stream, rendering)
    except render.NoSuchFrame as error:
        return error_response(request, 404, str(error), orthanc=(17, "Unknown resource"))
    except render.RenderError as error:
        # Orthanc answers 415 ("Unsupported media type") for what it cannot decode.
        return error_response(request, 415, str(error), orthanc=(24, "Not implemented yet"))
    return _cached(HttpResponse(data, content_type=rendering.media_type), etag)


def _cached(response, etag):
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    response["Vary"] = "Accept"
    return response


def _rendering(request, frame, kind):
    # Orthanc: PNG unless the client accepts only JPEG; /rendered also reads
    # ?quality, ?width, ?height, ?window-center and ?window-width.
    accept = request.headers.get("Accept", "")
    media_type = render.JPEG if "image/jpeg" in accept and "image/png" not in accept else render.PNG
    window = viewport = None
    quality = 90
    if kind == "rendered":
        params = request.GET
        if "quality" in params:
            quality = _number(params["quality"], "quality", int)
            if not 1 <= quality <= 100:
                raise ValueError("quality is between 1 and 100")
        if "window-center" in params or "window-width" in params:
            window = render.Window(_number(params.get("window-center", ""), "window-center", float),
                                   _number(params.get("window-width", ""), "window-width", float))
        if "width" in params or "height" in params:
            width = _number(params.get("width", "0"), "width", int)
            height = _number(params.get("height", "0"), "height", int)
            viewport = (width or 65535, height or 65535)
    return render.Rendering(media_type=media_type, frame=int(frame), window=window, viewport=viewport, quality=quality)


def _number(text, name, kind):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {text!r}")
