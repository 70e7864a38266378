"""Orthanc's image routes of an instance: /preview, /rendered, /frames/{n}/preview|rendered,
/image-uint8|uint16|int16, /numpy (and their frame forms), /frames/{n}/raw|raw.gz, /pdf;
and /series/{id}/numpy."""

import functools
import gzip
import hashlib
import io

import numpy as np
import pydicom
from django.http import HttpResponse
from django.views.decorators.http import require_GET
from PIL import Image
from pydicom.uid import JPEG2000TransferSyntaxes, JPEGTransferSyntaxes, EncapsulatedPDFStorage

from archive import render, transcode
from archive.errors import TranscodeError
from archive.models import Attachment
from api.rest import tags
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


# Orthanc's /image-uint8, /image-uint16, /image-int16: the stored values of a
# frame, no window, clipped to the type's range, as a PNG (8 or 16 bits; the
# negative values of int16 have no PNG form and are clipped to 0).
PIXEL_TYPES = {"uint8": (np.uint8, 0, 255), "uint16": (np.uint16, 0, 65535), "int16": (np.uint16, 0, 32767)}


class _Refused(Exception):
    """An answer other than the image: raised by the helpers, answered by the view."""

    def __init__(self, response):
        self.response = response


def _answers_refusals(view):
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except _Refused as refused:
            return refused.response

    return wrapper


@require_GET
@rest_view
@_answers_refusals
def raw_image(request, public_id, pixel_type, frame=0):
    with _stored_file(request, public_id) as stream:
        header, values = _stored_frame(request, stream, frame)
    dtype, low, high = PIXEL_TYPES[pixel_type]
    if values.ndim == 3 and (pixel_type != "uint8" or values.shape[2] != 3):
        return error_response(request, 415, f"a color image has no {pixel_type} form",
                              orthanc=(23, "Incompatible format of the images"))
    out = io.BytesIO()
    Image.fromarray(np.clip(values, low, high).astype(dtype)).save(out, format="PNG")
    return HttpResponse(out.getvalue(), content_type="image/png")


@require_GET
@rest_view
@_answers_refusals
def numpy_array(request, public_id, frame=None):
    """A NumPy .npy (or with ?compress=true, .npz) of the instance's frames
    (frames, rows, columns, samples), or of one frame (rows, columns, samples):
    rescaled to float32 unless ?rescale=false (Orthanc 1.10)."""
    rescaled = request.GET.get("rescale", "true").lower() != "false"
    frames = _frames_of(request, public_id, [frame] if frame is not None else None, rescaled)
    return _npy(request, frames[0] if frame is not None else np.stack(frames))


@require_GET
@rest_view
@_answers_refusals
def series_numpy(request, public_id):
    """As /instances/{id}/numpy, the frames of every instance of the series in the
    order of /series/{id}/ordered-slices (Orthanc 1.10)."""
    level, row = tags._row("series", public_id)
    if row is None:
        return not_found(request, f"series {public_id}")
    ordered, _ = tags.slice_order(level, row)
    if ordered is None:
        return error_response(request, 400, "the slices of this series have neither distinct positions "
                              "nor distinct instance numbers: they cannot be ordered", orthanc=(8, "Bad request"))
    rescaled = request.GET.get("rescale", "true").lower() != "false"
    frames = [f for s in ordered for f in _frames_of(request, s["id"], None, rescaled)]
    if len({f.shape for f in frames}) > 1:
        return error_response(request, 400, "the frames of this series differ in size: they make no volume",
                              orthanc=(23, "Incompatible format of the images"))
    return _npy(request, np.stack(frames))


def _frames_of(request, public_id, numbers, rescaled):
    """The (rows, columns, samples) arrays of the instance's frames `numbers` (all when None)."""
    frames = []
    with _stored_file(request, public_id) as stream:
        for number in numbers if numbers is not None else range(_frame_count(stream)):
            stream.seek(0)
            header, values = _stored_frame(request, stream, number)
            values = values if values.ndim == 3 else values[:, :, np.newaxis]
            frames.append(render.rescale(values, header) if rescaled else values)
    return frames


def _npy(request, array):
    out = io.BytesIO()
    if request.GET.get("compress", "false").lower() == "true":
        np.savez_compressed(out, array)
    else:
        np.save(out, array)
    return HttpResponse(out.getvalue(), content_type="application/octet-stream")


@require_GET
@rest_view
@_answers_refusals
def raw_frame(request, public_id, frame, gzipped=False):
    """The frame's bytes as stored: its codestream when compressed, its pixel values
    when native; /raw.gz gzips them."""
    # The DICOMweb frames route cuts frames out of the file the same way.
    from api.dicomweb.wado import FrameError, _frame  # noqa: PLC0415 (DICOMweb imports this package)

    with _stored_file(request, public_id) as stream:
        try:
            dataset, pixel = transcode.read_header(stream)
            if pixel is None:
                raise TranscodeError("the instance has no pixel data")
            count = transcode.frame_count(dataset)
            if not 0 <= frame < count:
                # 400 as Orthanc's raw routes (its image routes answer 404).
                return error_response(request, 400, f"frame {frame} does not exist: the instance has {count} "
                                      "frame(s), numbered from 0", orthanc=(3, "Parameter out of range"))
            data = _frame(dataset, pixel, frame, count)
        except (TranscodeError, FrameError) as error:
            return error_response(request, 415, str(error), orthanc=(24, "Not implemented yet"))
    if gzipped:
        return HttpResponse(gzip.compress(data), content_type="application/gzip")
    syntax = dataset.file_meta.TransferSyntaxUID
    # As Orthanc labels them: JPEG and JPEG 2000 codestreams by their type, any other as bytes.
    content_type = ("image/jpeg" if syntax in JPEGTransferSyntaxes else
                    "image/jp2" if syntax in JPEG2000TransferSyntaxes else "application/octet-stream")
    return HttpResponse(data, content_type=content_type)


@require_GET
@rest_view
@_answers_refusals
def pdf(request, public_id):
    """The PDF of an Encapsulated PDF instance (PS3.3 A.45.1); an empty 404 for others, as Orthanc."""
    with _stored_file(request, public_id) as stream:
        dataset = pydicom.dcmread(stream)
    if str(dataset.get("SOPClassUID", "")) != EncapsulatedPDFStorage or "EncapsulatedDocument" not in dataset:
        return HttpResponse(status=404)
    document = bytes(dataset.EncapsulatedDocument)
    # The value is padded to an even length (PS3.5 §7.1.1): the PDF ends at its %%EOF.
    end = document.rfind(b"%%EOF")
    return HttpResponse(document[: end + 5] if end >= 0 else document, content_type="application/pdf")


def _stored_file(request, public_id):
    key = Attachment.objects.filter(resource_id=public_id, name=Attachment.DICOM).values_list("storage_key", flat=True).first()
    if key is None:
        raise _Refused(not_found(request, f"instance {public_id}"))
    return get_storage().open(key)


def _stored_frame(request, stream, frame):
    try:
        return render.stored_frame(stream, int(frame))
    except render.NoSuchFrame as error:
        raise _Refused(error_response(request, 404, str(error), orthanc=(17, "Unknown resource")))
    except render.RenderError as error:
        raise _Refused(error_response(request, 415, str(error), orthanc=(24, "Not implemented yet")))


def _frame_count(stream):
    try:
        return render.frame_count(pydicom.dcmread(stream, stop_before_pixels=True))
    except Exception:  # unreadable: stored_frame says why
        return 1
