"""WADO-RS (PS3.18 §10.4) and WADO-URI (PS3.18 §9): instances, metadata, bulk data,
frames and rendered images.

Content negotiation follows PS3.18 §8.7: `transfer-syntax=*` gets what is
stored, a named syntax is transcoded (archive/transcode.py), a media type
without the parameter gets its default syntax (Explicit VR Little Endian for
application/dicom and application/octet-stream), `q` values order the choices,
and 406 is the answer only when none of them can be produced. Instances are
streamed one file, and a transcoded one one frame, at a time, so a 2 GB study
never sits in memory.
"""

import json
import logging
import uuid
from dataclasses import dataclass

from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.encaps import get_frame
from pydicom.filewriter import correct_ambiguous_vr_element
from pydicom.uid import (
    UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless,
)
from pydicom.valuerep import BYTES_VR

from archive import render, resources, transcode
from archive.errors import TranscodeError
from api.dicomweb import (DICOM_JSON, accepts_dicom_json, element_json, matches, media_ranges, raw_element_json,
                          studies_url)
from archive.ingest import UID_PATTERN
from archive.roles import checks_credentials, remembered_credentials
from api.rest import instances as rest_instances
from api.rest.errors import error_response, rest_view
from archive.storage import CHUNK, get_storage

DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"
# Values of OB, OD, OF, OL, OV, OW and UN longer than this are sent as a
# BulkDataURI in metadata, not inline.
BULK_SIZE = 1024
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
# What a media type means without a transfer-syntax parameter (PS3.18 Table 8.7.3-2).
DEFAULT_SYNTAXES = {
    DICOM: ExplicitVRLittleEndian, OCTET_STREAM: ExplicitVRLittleEndian, "image/jpeg": JPEGBaseline8Bit,
    "image/jls": JPEGLSLossless, "image/jp2": JPEG2000Lossless, "image/jpx": "1.2.840.10008.1.2.4.92",
    "image/jphc": "1.2.840.10008.1.2.4.201", "image/dicom-rle": RLELossless,
}
# Frames are offered as these, in this order of the server's preference when
# the client's ranges tie (`*/*`); image/png and a JPEG not stored as such are
# rendered (archive/render.py).
FRAME_TYPES = (OCTET_STREAM, "image/jls", "image/jp2", "image/jpx", "image/jphc", "image/dicom-rle", "image/jpeg",
               "image/png")
THUMBNAIL_SIZE = (128, 128)
RENDER_PARAMETERS = {"accept", "window", "viewport", "quality"}
WINDOW_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


log = logging.getLogger(__name__)


class NotAcceptable(Exception):
    """The client accepts no representation of the resource that the archive can produce."""


class InvalidParameter(Exception):
    """A query parameter is malformed or not supported; the message says which."""


class FrameError(Exception):
    """The frames cannot be cut out of the pixel data as its attributes describe it."""


@dataclass(frozen=True)
class FrameChoice:
    """How frames are sent: parts of `media_type` in `syntax` (the stored one when `as_stored`);
    `syntax` None means rendered by archive.render (image/jpeg, image/png)."""

    media_type: str
    syntax: str | None
    as_stored: bool = False

    @property
    def part_type(self):
        return self.media_type if self.syntax is None else f"{self.media_type}; transfer-syntax={self.syntax}"


# --- instances ---------------------------------------------------------------


@checks_credentials("GET")
@require_GET
@rest_view
def retrieve(request, study, series=None, instance=None):
    """The instances of a study, series or instance as multipart/related application/dicom (PS3.18 §10.4)."""
    stored = resources.stored_instances(study, series, instance, remembered_credentials(request))
    if not stored:
        return _unknown(request, study, series, instance)
    accepted = _accepted(request, [DICOM])
    if accepted == []:
        return error_response(request, 406, f'instances are served as multipart/related; type="{DICOM}"')
    try:
        choices = {syntax: _instance_syntaxes(accepted, syntax) for syntax in {i.transfer_syntax_uid for i in stored}}
        parts = _instance_parts(stored, choices)
        first = next(parts)  # a transcoding that fails on the first instance is still a 406
    except NotAcceptable as error:
        return error_response(request, 406, str(error))
    return _multipart(DICOM, _chained(first, parts))


def _instance_syntaxes(accepted, stored_syntax):
    """The syntaxes an instance stored in `stored_syntax` may be sent in, best first (PS3.18 §8.7.3.5)."""
    # No Accept at all: anything goes, the default syntax first.
    wanted = [ExplicitVRLittleEndian, "*"] if accepted is None else [param or DEFAULT_SYNTAXES[DICOM]
                                                                       for _, param in accepted]
    syntaxes = []
    for syntax in wanted:
        syntax = stored_syntax if syntax == "*" else syntax
        # A syntax the client named is what it asked for, lossy or not.
        if syntax not in syntaxes and transcode.can_transcode(stored_syntax, syntax, lossy=True):
            syntaxes.append(syntax)
    if not syntaxes:
        raise NotAcceptable(f"an instance is stored in {UID(stored_syntax).name or stored_syntax}; the "
                            f"accepted transfer syntaxes ({', '.join(str(w) for w in wanted)}) cannot be produced from it")
    return syntaxes


def _instance_parts(stored, choices):
    for position, item in enumerate(stored):
        for syntax in choices[item.transfer_syntax_uid]:
            if syntax == item.transfer_syntax_uid:
                yield f"{DICOM}; transfer-syntax={syntax}", _file_chunks(item.storage_key)
                break
            try:
                chunks = _prefetched(_transcoded_chunks(item.storage_key, syntax))
            except TranscodeError as error:
                log.warning("instance %s cannot be sent in %s: %s", item.public_id, syntax, error)
                continue
            yield f"{DICOM}; transfer-syntax={syntax}", chunks
            break
        else:
            what = f"instance {item.sop_instance_uid} cannot be produced in any accepted transfer syntax"
            if position == 0:
                raise NotAcceptable(what)  # nothing sent yet: the answer is a 406
            # The answer is streaming (200 sent): leaving the instance out is all
            # that is left; the log says which.
            log.warning("WADO-RS: %s; left out of the answer", what)


def _transcoded_chunks(storage_key, syntax):
    with get_storage().open(storage_key) as stream:
        yield from transcode.transcode(stream, syntax, lossy=True)


def _prefetched(iterator):
    """The iterator with its first item already computed: its errors are raised here, before anything is sent."""
    iterator = iter(iterator)
    try:
        first = next(iterator)
    except StopIteration:
        return iter(())
    return _chained(first, iterator)


def _chained(first, rest):
    yield first
    yield from rest


# --- metadata and bulk data --------------------------------------------------


@checks_credentials("GET")
@require_GET
@rest_view
def metadata(request, study, series=None, instance=None):
    """Every instance's attributes in DICOM JSON, bulk data as BulkDataURI (PS3.18 §10.4, F.2.6)."""
    if not accepts_dicom_json(request):
        return error_response(request, 406, f"metadata is served as {DICOM_JSON} only")
    stored = resources.stored_instances(study, series, instance, remembered_credentials(request))
    if not stored:
        return _unknown(request, study, series, instance)
    base = studies_url(request)
    return StreamingHttpResponse(_json_array(_instance_metadata(item, base) for item in stored),
                                 content_type=DICOM_JSON)


def _instance_metadata(stored, base):
    bulk_base = (f"{base}/{stored.study_uid}/series/{stored.series_uid}/instances/"
                 f"{stored.sop_instance_uid}/bulk")
    with get_storage().open(stored.storage_key) as stream:
        dataset, pixel = transcode.read_header(stream, defer_size=BULK_SIZE)
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
                plain = _plain_json(tag, item, vr)
                if plain is None:
                    element = correct_ambiguous_vr_element(dataset[tag], dataset, dataset.original_encoding[1])
                    plain = element_json(element)
                answer[f"{tag:08X}"] = plain
    if pixel is not None:
        answer[f"{pixel.tag:08X}"] = {"vr": pixel.vr, "BulkDataURI": f"{bulk_base}/{pixel.tag:08x}"}
    return answer


@checks_credentials("GET")
@require_GET
@rest_view
def bulk(request, study, series, instance, tag):
    """The value of one top-level attribute (PS3.18 §10.4): the target of a BulkDataURI."""
    stored = resources.stored_instances(study, series, instance, remembered_credentials(request))
    if not stored:
        return _unknown(request, study, series, instance)
    stored, tag = stored[0], int(tag, 16)
    with get_storage().open(stored.storage_key) as stream:
        dataset, pixel = transcode.read_header(stream, defer_size=BULK_SIZE)
        if pixel is not None and pixel.tag == tag:
            return _frames_response(request, stored, dataset, pixel, bulk=True)
        if tag not in dataset or _vr(tag, dataset.get_item(tag, keep_deferred=True)) not in BYTES_VR:
            return error_response(request, 404, f"instance {stored.sop_instance_uid} has no bulk data "
                                  f"attribute ({tag >> 16:04X},{tag & 0xFFFF:04X})")
        value = dataset[tag].value or b""
    return _bulk_response(request, stored, [value])


def _bulk_response(request, stored, chunks):
    if _accepted(request, [OCTET_STREAM]) == []:
        return error_response(request, 406, f'bulk data is served as multipart/related; type="{OCTET_STREAM}"')
    return _multipart(OCTET_STREAM, [(OCTET_STREAM, chunks)])


# --- frames ------------------------------------------------------------------


@checks_credentials("GET")
@require_GET
@rest_view
def frames(request, study, series, instance, frame_list):
    """Frames of an instance (PS3.18 §10.4): native ones as octet-stream, compressed ones as stored."""
    try:
        numbers = _frame_numbers(frame_list)
    except InvalidParameter as error:
        return error_response(request, 400, str(error))
    stored = resources.stored_instances(study, series, instance, remembered_credentials(request))
    if not stored:
        return _unknown(request, study, series, instance)
    with get_storage().open(stored[0].storage_key) as stream:
        dataset, pixel = transcode.read_header(stream)
        if pixel is None:
            return error_response(request, 404, f"instance {instance} has no pixel data")
        return _frames_response(request, stored[0], dataset, pixel, numbers)


def _frames_response(request, stored, dataset, pixel, numbers=None, bulk=False):
    """The frames (numbered from 1; all of them when numbers is None) as a multipart answer.

    As bulk data (the pixel data's BulkDataURI), native pixel data is one part,
    compressed frames one part each (PS3.18 §8.7.3.3).
    """
    try:
        count = transcode.frame_count(dataset)
    except TranscodeError as error:
        return error_response(request, 406, str(error))
    numbers = numbers or range(1, count + 1)
    missing = [n for n in numbers if n > count]
    if missing:
        return error_response(request, 404, f"frame {missing[0]} does not exist: the instance has {count} frame(s)")
    indices = [n - 1 for n in numbers]
    try:
        choice = _frame_choice(request, stored.transfer_syntax_uid, bulk)
        if choice.as_stored and not bulk:
            # Frames as stored, asked by number (a viewer asks one at a time): cut
            # now from the file already open, rather than parse its header again.
            frames = [_frame(dataset, pixel, index, count) for index in indices]
        else:
            frames = _prefetched(_frame_data(stored.storage_key, choice, indices))
    except (NotAcceptable, FrameError, TranscodeError, render.RenderError) as error:
        return error_response(request, 406, str(error))
    if bulk and (choice.syntax is None or not UID(choice.syntax).is_compressed):
        return _multipart(choice.media_type, [(choice.part_type, frames)])
    return _multipart(choice.media_type, ((choice.part_type, [frame]) for frame in frames))


def _frame_choice(request, stored_syntax, bulk=False):
    """How to send frames stored in `stored_syntax`: the first acceptable choice that can be produced."""
    accepted = _accepted(request, [OCTET_STREAM] if bulk else FRAME_TYPES)
    if accepted is None:
        # No Accept: the default (Explicit VR Little Endian), else what is stored.
        accepted = [(OCTET_STREAM, None), (OCTET_STREAM, "*")]
    for media_type, param in accepted:
        choice = _frame_option(media_type, param, UID(stored_syntax))
        if choice is not None:
            return choice
    wanted = ", ".join(f"{m}; transfer-syntax={p}" if p else m for m, p in accepted) or "nothing pacsweb serves"
    raise NotAcceptable(f"the frames are stored in {UID(stored_syntax).name or stored_syntax}; the client accepts "
                        f"{wanted}, which cannot be produced from them")


def _frame_option(media_type, param, stored):
    stored_type = FRAME_MEDIA_TYPES.get(stored, OCTET_STREAM)
    stored_native = _native_syntax(stored) if not stored.is_compressed else None
    if media_type == "image/png":
        return FrameChoice(media_type, None) if _decodable(stored) else None
    if param == "*":
        if media_type in (OCTET_STREAM, stored_type):
            return FrameChoice(media_type, stored_native or stored, as_stored=True)
        param = None  # any syntax of that media type: its default one
    syntax = UID(param or DEFAULT_SYNTAXES[media_type])
    if media_type != OCTET_STREAM and FRAME_MEDIA_TYPES.get(syntax) != media_type:
        return None  # image/jp2; transfer-syntax=<a JPEG-LS syntax> is a contradiction
    if syntax in (stored, stored_native):
        return FrameChoice(media_type, syntax, as_stored=True)
    if stored_native == ExplicitVRLittleEndian and syntax == ImplicitVRLittleEndian:
        return FrameChoice(media_type, syntax, as_stored=True)  # native frames are the same bytes
    if syntax == JPEGBaseline8Bit and media_type == "image/jpeg":
        # A baseline JPEG of the rendered frame (8 bits, windowed): what image/jpeg
        # means for a browser or a viewer's thumbnail; lossy, as the client asked.
        return FrameChoice(media_type, None) if _decodable(stored) else None
    if transcode.can_transcode(stored, syntax, lossy=param is not None):
        return FrameChoice(media_type, syntax)
    return None


def _decodable(syntax):
    return transcode.can_transcode(syntax, ExplicitVRLittleEndian)


def _frame_data(storage_key, choice, indices):
    """The bytes of each frame, one at a time, from the file opened while the answer streams."""
    with get_storage().open(storage_key) as stream:
        if choice.syntax is None:
            for index in indices:
                stream.seek(0)
                yield render.render(stream, render.Rendering(media_type=choice.media_type, frame=index))
            return
        if not choice.as_stored:
            yield from transcode.frames(stream, choice.syntax, indices, lossy=True)
            return
        dataset, pixel = transcode.read_header(stream)
        count = transcode.frame_count(dataset)
        for index in indices:
            yield _frame(dataset, pixel, index, count)


def _frame_numbers(text):
    numbers = []
    for item in text.split(","):
        if not item.strip().isdigit() or int(item) < 1:
            raise InvalidParameter(f"frame numbers are integers from 1, separated by commas; not {text!r}")
        numbers.append(int(item))
    return numbers


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


@checks_credentials("GET")
@require_GET
@rest_view
def rendered(request, study, series=None, instance=None, frame_list=None):
    """A rendered image (PS3.18 §10.4, §8.3.5); the study's or series' first instance at those levels."""
    return _render_view(request, study, series, instance, frame_list, default_viewport=None)


@checks_credentials("GET")
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
    stored = resources.stored_instances(study, series, instance, remembered_credentials(request))
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


@checks_credentials("GET")
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
    stored = resources.stored_instances(study, series, instance, remembered_credentials(request))
    if not stored:
        return _unknown(request, study, series, instance)
    if rendering is not None:
        return _rendered_response(request, stored[0], rendering)
    wanted = request.GET.get("transferSyntax")
    if wanted and wanted != stored[0].transfer_syntax_uid:
        # PS3.18 §9.2.2.1: transferSyntax names the syntax the client wants; the
        # archive transcodes to it (lossy only when that is what is named).
        try:
            chunks = _prefetched(_transcoded_chunks(stored[0].storage_key, wanted))
        except TranscodeError as error:
            return error_response(request, 406, f"the instance is stored as {stored[0].transfer_syntax_uid} and "
                                  f"cannot be sent as {wanted}: {error}")
        return StreamingHttpResponse(chunks, content_type=DICOM)
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


def _plain_json(tag, item, vr):
    """The DICOM JSON of an element not converted yet, straight from its bytes
    (raw_element_json), unless its VR is one the dictionary leaves open ("US or SS",
    which pydicom settles from other elements); None where pydicom must convert it."""
    if not isinstance(item, RawDataElement) or item.value is None or vr == "UN":
        return None
    if item.VR is None and " or " in dictionary_VR(tag):
        return None
    return raw_element_json(vr, item.value, item.is_little_endian)


def _length(item):
    if isinstance(item, RawDataElement):
        return item.length
    return len(item.value or b"")


def _accepted(request, media_types):
    """[(media type, transfer-syntax parameter or None)] the client accepts among `media_types`.

    Best first: by q value (RFC 9110 §12.4.2; q=0 is a refusal), then in the
    client's order, then in `media_types` order for a range that covers several
    (`*/*`). The inner `type` of a multipart/related range is the media type
    (PS3.18 §8.7.3.1). None when the client states nothing: anything goes.
    """
    ranges = media_ranges(request)
    if not ranges:
        return None
    ranked = []
    for position, (media_range, params) in enumerate(ranges):
        quality = _q(params.get("q"))
        if quality <= 0:
            continue
        inner = params.get("type", "*/*").lower() if media_range in ("multipart/related", "multipart/*") else media_range
        for preference, media_type in enumerate(media_types):
            if matches(inner, media_type):
                ranked.append((-quality, position, preference, media_type, params.get("transfer-syntax")))
    ranked.sort(key=lambda item: item[:3])
    return [(media_type, syntax) for *_, media_type, syntax in ranked]


def _q(text):
    try:
        return min(max(float(text), 0.0), 1.0) if text is not None else 1.0
    except ValueError:
        return 1.0


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
