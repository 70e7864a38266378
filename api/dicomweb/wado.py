"""WADO-RS (PS3.18 §10.4) and WADO-URI (PS3.18 §9): instances, metadata, bulk data,
frames and rendered images, read from the storage area as they were stored.

Nothing is transcoded: an instance is sent in the transfer syntax it was stored
in, and a client that insists on another one is answered 406. Instances are
streamed one file at a time, so a 2 GB study never sits in memory.
"""

import io
import json
import struct
import uuid
from dataclasses import dataclass

import pydicom
from django.db.models import OuterRef, Subquery
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.encaps import get_frame
from pydicom.filewriter import correct_ambiguous_vr_element
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian
from pydicom.valuerep import BYTES_VR

from archive import render
from api.dicomweb import DICOM_JSON, accepts_dicom_json, element_json, matches, media_ranges, studies_url
from archive.ingest import UID_PATTERN
from archive.models import Attachment, Instance
from api.rest import instances as rest_instances
from api.rest.errors import error_response, rest_view
from archive.storage import CHUNK, get_storage

DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"
# Values of OB, OD, OF, OL, OV, OW and UN longer than this are sent as a
# BulkDataURI in metadata, not inline.
BULK_SIZE = 1024
PIXEL_TAGS = {0x7FE00008: "OF", 0x7FE00009: "OD", 0x7FE00010: "OW"}  # VR when the syntax is implicit
# Media types of compressed frames, by transfer syntax (PS3.18 §8.7.3).
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx", "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
THUMBNAIL_SIZE = (128, 128)
RENDER_PARAMETERS = {"accept", "window", "viewport", "quality"}
WINDOW_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


class NotAcceptable(Exception):
    """The client accepts no representation that can be sent without transcoding."""


class InvalidParameter(Exception):
    """A query parameter is malformed or not supported; the message says which."""


class FrameError(Exception):
    """The frames cannot be cut out of the pixel data as its attributes describe it."""


@dataclass(frozen=True)
class StoredInstance:
    public_id: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    storage_key: str


@dataclass(frozen=True)
class PixelValue:
    """Where the value of the pixel data element lies: `length` is None when undefined (encapsulated)."""

    tag: int
    vr: str
    source: object
    offset: int
    length: int | None


# --- instances ---------------------------------------------------------------


@require_GET
@rest_view
def retrieve(request, study, series=None, instance=None):
    """The instances of a study, series or instance as multipart/related application/dicom (PS3.18 §10.4)."""
    stored = locate(study, series, instance)
    if not stored:
        return _unknown(request, study, series, instance)
    try:
        for syntax in {item.transfer_syntax_uid for item in stored}:
            _negotiate(request, DICOM, syntax)
    except NotAcceptable as error:
        return error_response(request, 406, str(error))
    parts = ((f"{DICOM}; transfer-syntax={item.transfer_syntax_uid}", _file_chunks(item.storage_key))
             for item in stored)
    return _multipart(DICOM, parts)


def locate(study, series=None, instance=None):
    """The stored instances under the UIDs, in series then instance number order, in one query."""
    rows = Instance.objects.filter(series__study__study_instance_uid=study)
    if series:
        rows = rows.filter(series__series_instance_uid=series)
    if instance:
        rows = rows.filter(sop_instance_uid=instance)
    files = Attachment.objects.filter(resource_id=OuterRef("public_id"), name=Attachment.DICOM)
    rows = (rows.annotate(storage_key=Subquery(files.values("storage_key")[:1]))
            .filter(storage_key__isnull=False)
            .order_by("series_id", "instance_number", "pk")
            .values_list("public_id", "series__study__study_instance_uid", "series__series_instance_uid",
                         "sop_instance_uid", "transfer_syntax_uid", "storage_key"))
    return [StoredInstance(*row) for row in rows]


# --- metadata and bulk data --------------------------------------------------


@require_GET
@rest_view
def metadata(request, study, series=None, instance=None):
    """Every instance's attributes in DICOM JSON, bulk data as BulkDataURI (PS3.18 §10.4, F.2.6)."""
    if not accepts_dicom_json(request):
        return error_response(request, 406, f"metadata is served as {DICOM_JSON} only")
    stored = locate(study, series, instance)
    if not stored:
        return _unknown(request, study, series, instance)
    base = studies_url(request)
    return StreamingHttpResponse(_json_array(_instance_metadata(item, base) for item in stored),
                                 content_type=DICOM_JSON)


def _instance_metadata(stored, base):
    bulk_base = (f"{base}/{stored.study_uid}/series/{stored.series_uid}/instances/"
                 f"{stored.sop_instance_uid}/bulk")
    with get_storage().open(stored.storage_key) as stream:
        dataset, pixel = _read_header(stream)
        answer = {}
        for tag in dataset.keys():
            if tag & 0xFFFF == 0:
                continue  # PS3.18 F.2.2: no Group Length attributes in DICOM JSON
            item = dataset.get_item(tag, keep_deferred=True)
            vr = _vr(tag, item)
            if vr in BYTES_VR and _length(item) > BULK_SIZE:
                # The tag in lower case in the URI, as Orthanc's DICOMweb plugin writes it.
                answer[f"{tag:08X}"] = {"vr": vr, "BulkDataURI": f"{bulk_base}/{tag:08x}"}
            else:
                element = correct_ambiguous_vr_element(dataset[tag], dataset, dataset.original_encoding[1])
                answer[f"{tag:08X}"] = element_json(element)
    if pixel is not None:
        answer[f"{pixel.tag:08X}"] = {"vr": pixel.vr, "BulkDataURI": f"{bulk_base}/{pixel.tag:08x}"}
    return answer


@require_GET
@rest_view
def bulk(request, study, series, instance, tag):
    """The value of one top-level attribute (PS3.18 §10.4): the target of a BulkDataURI."""
    stored = locate(study, series, instance)
    if not stored:
        return _unknown(request, study, series, instance)
    stored, tag = stored[0], int(tag, 16)
    with get_storage().open(stored.storage_key) as stream:
        dataset, pixel = _read_header(stream)
        if pixel is not None and pixel.tag == tag:
            if pixel.length is None:
                # Encapsulated pixel data is sent as its frames, each as stored.
                return _frames_response(request, stored, dataset, pixel)
            return _bulk_response(request, stored, _pixel_chunks(stored.storage_key))
        if tag not in dataset or _vr(tag, dataset.get_item(tag, keep_deferred=True)) not in BYTES_VR:
            return error_response(request, 404, f"instance {stored.sop_instance_uid} has no bulk data "
                                  f"attribute ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        value = dataset[tag].value or b""
    return _bulk_response(request, stored, [value])


def _bulk_response(request, stored, chunks):
    try:
        _negotiate(request, OCTET_STREAM, _native_syntax(stored.transfer_syntax_uid))
    except NotAcceptable as error:
        return error_response(request, 406, str(error))
    return _multipart(OCTET_STREAM, [(OCTET_STREAM, chunks)])


def _pixel_chunks(storage_key):
    # The file is opened again while the answer streams: the view's own handle
    # is closed by then.
    with get_storage().open(storage_key) as stream:
        _, pixel = _read_header(stream)
        pixel.source.seek(pixel.offset)
        remaining = pixel.length
        while remaining > 0:
            chunk = pixel.source.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


# --- frames ------------------------------------------------------------------


@require_GET
@rest_view
def frames(request, study, series, instance, frame_list):
    """Frames of an instance (PS3.18 §10.4): native ones as octet-stream, compressed ones as stored."""
    try:
        numbers = _frame_numbers(frame_list)
    except InvalidParameter as error:
        return error_response(request, 400, str(error))
    stored = locate(study, series, instance)
    if not stored:
        return _unknown(request, study, series, instance)
    with get_storage().open(stored[0].storage_key) as stream:
        dataset, pixel = _read_header(stream)
        if pixel is None:
            return error_response(request, 404, f"instance {instance} has no pixel data")
        return _frames_response(request, stored[0], dataset, pixel, numbers)


def _frames_response(request, stored, dataset, pixel, numbers=None):
    """The frames (numbered from 1; all of them when numbers is None) as a multipart answer."""
    try:
        count = render.frame_count(dataset)
        numbers = numbers or range(1, count + 1)
        missing = [n for n in numbers if n > count]
        if missing:
            return error_response(request, 404, f"frame {missing[0]} does not exist: the instance has {count} frame(s)")
        media_type, syntax = _frame_media_type(stored.transfer_syntax_uid, pixel)
        _negotiate(request, media_type, syntax)
        data = [_frame(dataset, pixel, number - 1, count) for number in numbers]
    except (NotAcceptable, FrameError, render.RenderError) as error:
        return error_response(request, 406, str(error))
    part_type = media_type if media_type == OCTET_STREAM else f"{media_type}; transfer-syntax={syntax}"
    return _multipart(media_type, ((part_type, [frame]) for frame in data))


def _frame_numbers(text):
    numbers = []
    for item in text.split(","):
        if not item.strip().isdigit() or int(item) < 1:
            raise InvalidParameter(f"frame numbers are integers from 1, separated by commas; not {text!r}")
        numbers.append(int(item))
    return numbers


def _frame_media_type(transfer_syntax_uid, pixel):
    syntax = UID(transfer_syntax_uid)
    if pixel.length is not None:
        return OCTET_STREAM, _native_syntax(syntax)
    if syntax not in FRAME_MEDIA_TYPES:
        raise NotAcceptable(f"frames cannot be cut from pixel data in {syntax.name or syntax}")
    return FRAME_MEDIA_TYPES[syntax], syntax


def _native_syntax(syntax):
    # Native pixel data is the same bytes in implicit, explicit or deflated
    # little endian: all of them are Explicit VR Little Endian for a client.
    return ExplicitVRBigEndian if syntax == ExplicitVRBigEndian else ExplicitVRLittleEndian


def _frame(dataset, pixel, index, count):
    if pixel.length is None:
        pixel.source.seek(pixel.offset)
        offsets = None
        if "ExtendedOffsetTable" in dataset and "ExtendedOffsetTableLengths" in dataset:
            offsets = (dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths)
        try:
            return get_frame(pixel.source, index, extended_offsets=offsets, number_of_frames=count)
        except ValueError as error:
            raise FrameError(f"frame {index + 1} cannot be found in the encapsulated pixel data: {error}")
    size = _native_frame_size(dataset)
    if (index + 1) * size > pixel.length:
        raise FrameError(f"the pixel data ends before frame {index + 1}")
    pixel.source.seek(pixel.offset + index * size)
    return pixel.source.read(size)


def _native_frame_size(dataset):
    try:
        bits = dataset.Rows * dataset.Columns * dataset.SamplesPerPixel * dataset.BitsAllocated
    except (AttributeError, TypeError) as error:
        raise FrameError(f"the image attributes do not give the size of a frame: {error}")
    if dataset.get("PhotometricInterpretation") == "YBR_FULL_422":
        bits = bits * 2 // 3  # PS3.3 C.7.6.3.1.2: two pixels share one pair of chroma samples
    if bits % 8:
        raise FrameError("frames of bit-packed pixel data do not start on a byte boundary")
    return bits // 8


# --- rendered images ---------------------------------------------------------


@require_GET
@rest_view
def rendered(request, study, series=None, instance=None, frame_list=None):
    """A rendered image (PS3.18 §10.4, §8.3.5); the study's or series' first instance at those levels."""
    return _render_view(request, study, series, instance, frame_list, default_viewport=None)


@require_GET
@rest_view
def thumbnail(request, study, series=None, instance=None, frame_list=None):
    """A small rendered image (PS3.18 §10.4, thumbnail resources)."""
    return _render_view(request, study, series, instance, frame_list, default_viewport=THUMBNAIL_SIZE)


def _render_view(request, study, series, instance, frame_list, default_viewport):
    try:
        media_type = _image_media_type(request)
        rendering = _rendering(request, media_type, frame_list, default_viewport)
    except InvalidParameter as error:
        return error_response(request, 400, str(error))
    except NotAcceptable as error:
        return error_response(request, 406, str(error))
    stored = locate(study, series, instance)
    if not stored:
        return _unknown(request, study, series, instance)
    return _rendered_response(request, stored[0], rendering)


def _rendered_response(request, stored, rendering):
    try:
        with get_storage().open(stored.storage_key) as stream:
            image = render.render(stream, rendering)
    except render.NoSuchFrame as error:
        return error_response(request, 404, str(error))
    except render.RenderError as error:
        return error_response(request, 406, str(error))
    return HttpResponse(image, content_type=rendering.media_type)


def _image_media_type(request):
    ranges = media_ranges(request)
    if not ranges:
        return render.JPEG
    for media_range, _ in ranges:
        for media_type in render.MEDIA_TYPES:
            if matches(media_range, media_type):
                return media_type
    raise NotAcceptable(f"rendered images are served as {' or '.join(render.MEDIA_TYPES)}")


def _rendering(request, media_type, frame_list, default_viewport):
    unknown = set(request.GET) - RENDER_PARAMETERS
    if unknown:
        raise InvalidParameter(f"unsupported parameter(s) {', '.join(sorted(unknown))}; "
                               f"supported: {', '.join(sorted(RENDER_PARAMETERS))}")
    frame = 0
    if frame_list is not None:
        numbers = _frame_numbers(frame_list)
        if len(numbers) != 1:
            raise InvalidParameter("one frame is rendered at a time")
        frame = numbers[0] - 1
    return render.Rendering(
        media_type=media_type,
        frame=frame,
        window=_window(request.GET.get("window")),
        viewport=_viewport(request.GET.get("viewport")) or default_viewport,
        quality=_quality(request.GET.get("quality")),
    )


def _window(text):
    """window=center,width,function (PS3.18 §8.3.5.1.4)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise InvalidParameter("window is center,width,function (function: linear, linear-exact or sigmoid)")
    function = WINDOW_FUNCTIONS.get(parts[2].lower() if len(parts) == 3 else "linear")
    if function is None:
        raise InvalidParameter(f"window function {parts[2]!r} is not linear, linear-exact or sigmoid")
    center, width = _number(parts[0], "window center"), _number(parts[1], "window width")
    if width <= 0:
        raise InvalidParameter("the window width must be positive")
    return render.Window(center, width, function)


def _viewport(text):
    """viewport=columns,rows (PS3.18 §8.3.5.1.3); a source region is not supported."""
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise InvalidParameter("viewport is columns,rows (two positive integers; source regions are not supported)")
    return int(parts[0]), int(parts[1])


def _quality(text):
    if text is None:
        return render.Rendering.quality
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise InvalidParameter(f"quality is an integer from 1 to 100, not {text!r}")
    return int(text)


def _number(text, what):
    try:
        return float(text)
    except ValueError:
        raise InvalidParameter(f"the {what} {text!r} is not a number")


# --- WADO-URI ----------------------------------------------------------------


@require_GET
@rest_view
def wado_uri(request):
    """GET /wado?requestType=WADO&studyUID=&seriesUID=&objectUID= (PS3.18 §9: the file or a rendered image)."""
    try:
        study, series, instance = _wado_uids(request.GET)
        media_type = _wado_content_type(request.GET.get("contentType"))
        rendering = None if media_type == DICOM else _wado_rendering(request.GET, media_type)
    except InvalidParameter as error:
        return error_response(request, 400, str(error))
    except NotAcceptable as error:
        return error_response(request, 406, str(error))
    stored = locate(study, series, instance)
    if not stored:
        return _unknown(request, study, series, instance)
    if rendering is not None:
        return _rendered_response(request, stored[0], rendering)
    wanted = request.GET.get("transferSyntax")
    if wanted and wanted != stored[0].transfer_syntax_uid:
        return error_response(request, 406, f"the instance is stored as {stored[0].transfer_syntax_uid}; "
                              "pacsweb does not transcode")
    return rest_instances.file(request, stored[0].public_id)


def _wado_uids(params):
    if params.get("requestType") != "WADO":
        raise InvalidParameter("requestType=WADO is required")
    uids = []
    for name in ("studyUID", "seriesUID", "objectUID"):
        value = params.get(name, "")
        if not UID_PATTERN.match(value) or len(value) > 64:
            raise InvalidParameter(f"{name} is required and must be a UID (digits and dots), not {value!r}")
        uids.append(value)
    return uids


def _wado_content_type(text):
    """The first of the listed content types that can be served (PS3.18 §9); JPEG by default."""
    if not text:
        return render.JPEG
    for item in text.split(","):
        media_type = item.split(";")[0].strip().lower()
        if media_type in (DICOM, *render.MEDIA_TYPES):
            return media_type
    raise NotAcceptable(f"contentType {text!r}: pacsweb serves {DICOM}, {', '.join(render.MEDIA_TYPES)}")


def _wado_rendering(params, media_type):
    frame = params.get("frameNumber", "1")
    if not frame.isdigit() or int(frame) < 1:
        raise InvalidParameter(f"frameNumber is an integer from 1, not {frame!r}")
    window = None
    if "windowCenter" in params or "windowWidth" in params:
        window = _window(f"{params.get('windowCenter', '')},{params.get('windowWidth', '')}")
    rows, columns = _wado_size(params, "rows"), _wado_size(params, "columns")
    # One of rows or columns alone keeps the aspect ratio (PS3.18 §9).
    viewport = (columns or 2**16, rows or 2**16) if rows or columns else None
    return render.Rendering(media_type=media_type, frame=int(frame) - 1, window=window, viewport=viewport,
                            quality=_quality(params.get("imageQuality")))


def _wado_size(params, name):
    value = params.get(name)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise InvalidParameter(f"{name} is a positive integer, not {value!r}")
    return int(value)


# --- shared ------------------------------------------------------------------


def _read_header(stream):
    """The dataset up to its pixel data, and where the pixel data value lies (or None).

    Values longer than BULK_SIZE are not read (pydicom reads them on access),
    and the pixel data is never read: its place in the file is enough.
    """
    dataset = pydicom.dcmread(stream, stop_before_pixels=True, defer_size=BULK_SIZE)
    syntax = UID(dataset.file_meta.TransferSyntaxUID)
    if syntax == DeflatedExplicitVRLittleEndian:
        return _inflated_header(stream)
    # pydicom stops right before the pixel data element's tag.
    header = stream.read(8)
    if len(header) < 8:
        return dataset, None
    endian = "<" if syntax.is_little_endian else ">"
    group, element = struct.unpack(f"{endian}HH", header[:4])
    tag = group << 16 | element
    if tag not in PIXEL_TAGS:
        return dataset, None
    if syntax.is_implicit_VR:
        vr, (length,) = PIXEL_TAGS[tag], struct.unpack(f"{endian}L", header[4:])
    else:
        # Pixel data VRs have a 2-byte reserved field and a 4-byte length (PS3.5 §7.1.2).
        vr, (length,) = header[4:6].decode("ascii"), struct.unpack(f"{endian}L", stream.read(4))
    return dataset, PixelValue(tag, vr, stream, stream.tell(), None if length == 0xFFFFFFFF else length)


def _inflated_header(stream):
    # A deflated dataset exists only once inflated, whole, in memory; its
    # pixel data is native (PS3.5 A.5), so it is cut from the inflated bytes.
    stream.seek(0)
    dataset = pydicom.dcmread(stream)
    tag = next((t for t in PIXEL_TAGS if t in dataset), None)
    if tag is None:
        return dataset, None
    element = dataset[tag]
    del dataset[tag]
    return dataset, PixelValue(tag, element.VR, io.BytesIO(element.value), 0, len(element.value))


def _vr(tag, item):
    """The VR of a dataset item, read (DataElement) or not yet (RawDataElement, maybe deferred)."""
    vr = item.VR
    if vr is None:  # a raw element of an implicit VR dataset: the dictionary's
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    if " or " in vr:  # "OB or OW": implicit VR little endian encodes these as OW (PS3.5 A.1)
        return "OW" if "OW" in vr else vr.split(" or ")[0]
    return vr


def _length(item):
    if isinstance(item, RawDataElement):
        return item.length
    return len(item.value or b"")


def _negotiate(request, media_type, syntax):
    """Raise NotAcceptable unless the client accepts media_type in that transfer syntax.

    With no Accept, or without a transfer-syntax parameter, or with
    transfer-syntax=*, the stored syntax is accepted: like Orthanc, the archive
    sends what it holds rather than PS3.18's default Explicit VR Little Endian.
    """
    ranges = media_ranges(request)
    if not ranges:
        return
    syntaxes = []
    for media_range, params in ranges:
        inner = params.get("type", "*/*").lower() if media_range in ("multipart/related", "multipart/*") else media_range
        if matches(inner, media_type):
            syntaxes.append(params.get("transfer-syntax", "*"))
    if not syntaxes:
        raise NotAcceptable(f'this resource is served as multipart/related; type="{media_type}"')
    if "*" not in syntaxes and syntax not in syntaxes:
        raise NotAcceptable(f"the resource is stored in transfer syntax {syntax} and pacsweb does not transcode: "
                            "accept that syntax or transfer-syntax=*")


def _multipart(media_type, parts):
    """A streamed multipart/related answer (RFC 2387, PS3.18 §8.7); parts are (Content-Type, chunks)."""
    boundary = uuid.uuid4().hex
    return StreamingHttpResponse(
        _encode_parts(boundary, parts),
        content_type=f'multipart/related; type="{media_type}"; boundary={boundary}',
    )


def _encode_parts(boundary, parts):
    for content_type, chunks in parts:
        yield f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode("ascii")
        yield from chunks
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")


def _file_chunks(storage_key):
    with get_storage().open(storage_key) as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def _json_array(items):
    yield b"["
    for index, item in enumerate(items):
        yield (b"," if index else b"") + json.dumps(item).encode("utf-8")
    yield b"]"


def _unknown(request, study, series, instance):
    if instance:
        what = f"instance {instance} of series {series} in study {study}"
    elif series:
        what = f"series {series} of study {study}"
    else:
        what = f"study {study}"
    return error_response(request, 404, f"{what} is not in the archive")
