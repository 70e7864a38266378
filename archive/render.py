"""Pixel data → PNG / JPEG: what WADO-RS /rendered, /thumbnail and WADO-URI show.

One frame is decoded (pydicom reads only that frame's bytes from the file), then
turned into 8-bit display values the way PS3.3 describes a grayscale pipeline:
Modality LUT (C.11.1), VOI LUT or window (C.11.2), MONOCHROME1 inversion
(C.7.6.3.1.2). Color images go through pydicom's YBR → RGB and palette
conversions. Whatever pydicom cannot decode raises RenderError, never a 500.
"""

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from django.conf import settings
from PIL import Image, ImageOps
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, pixel_array

from archive import transcode
from archive.errors import NoSuchFrame, RenderError, TranscodeError  # noqa: F401 (raised here, caught by name)

JPEG = "image/jpeg"
PNG = "image/png"
MEDIA_TYPES = (JPEG, PNG)
WINDOW_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


@dataclass(frozen=True)
class Window:
    """A VOI window (PS3.3 C.11.2.1.2); `function` is one of WINDOW_FUNCTIONS."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True)
class Rendering:
    """What to draw: `frame` counts from 0; `viewport` is (columns, rows) to fit in."""

    media_type: str = JPEG
    frame: int = 0
    window: Window | None = None
    viewport: tuple[int, int] | None = None
    quality: int = 90


def render(stream, rendering=Rendering()):
    """PNG or JPEG bytes of one frame of the DICOM file read from `stream` (seekable, at 0)."""
    header = image_header(stream)
    count = frame_count(header)
    if not 0 <= rendering.frame < count:
        raise NoSuchFrame(f"frame {rendering.frame + 1} does not exist: the instance has {count} frame(s)")
    _check_size(header, rendering.viewport)
    pixels = _decode(stream, header, rendering.frame)
    try:
        values = _display_values(pixels, header, rendering.window)
    except (ValueError, TypeError, NotImplementedError, AttributeError, IndexError) as error:
        # What pydicom's LUT functions raise on attributes that are missing,
        # malformed or of a kind they do not handle (a 9-bit VOI LUT).
        raise RenderError(f"the image attributes cannot be applied: {error}")
    image = Image.fromarray(values)
    if rendering.viewport:
        # PS3.18 §8.3.5.1.3: the image is scaled to fit the viewport, aspect kept.
        image = ImageOps.contain(image, rendering.viewport)
    out = io.BytesIO()
    if rendering.media_type == PNG:
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=rendering.quality)
    return out.getvalue()


def image_header(stream):
    """The header of an image instance (no pixel data read); RenderError when it is none."""
    try:
        header = pydicom.dcmread(stream, stop_before_pixels=True)
    except Exception as error:  # pydicom raises many types on malformed input
        raise RenderError(f"the DICOM file cannot be read: {error}")
    if "Rows" not in header or "Columns" not in header:
        raise RenderError("the instance has no image (no Rows and Columns)")
    return header


def _check_size(header, viewport):
    """Refuse before decoding what would take more memory than one request may: the
    grayscale pipeline holds a frame several times over in float64 (an 8192 x 8192
    16-bit preview peaked at 2.27 GB), and a viewport scales up as well as down."""
    limit = settings.MAX_RENDER_PIXELS
    try:
        pixels = int(header.Rows) * int(header.Columns)
    except (TypeError, ValueError):
        raise RenderError("Rows or Columns is not a number")
    if pixels > limit:
        raise RenderError(f"the frame has {header.Rows} x {header.Columns} pixels, more than "
                          f"PACS_MAX_RENDER_MPIXELS ({limit / 2**20:g} million) allows to render")
    if viewport and viewport[0] * viewport[1] > limit:
        raise RenderError(f"a viewport of {viewport[0]} x {viewport[1]} is larger than "
                          f"PACS_MAX_RENDER_MPIXELS ({limit / 2**20:g} million pixels) allows")


def frame_count(header):
    """NumberOfFrames (IS, PS3.3 C.7.6.6), 1 when absent."""
    try:
        return int(header.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise RenderError(f"NumberOfFrames {header.get('NumberOfFrames')!r} is not a number")


def _decode(stream, header, frame):
    # The transcoder's decoder: one frame read from the open file, the same
    # codecs and the same YCbCr → RGB conversion as WADO and C-MOVE use.
    try:
        stream.seek(0)
        dataset, pixel = transcode.read_header(stream)
        if pixel is None:
            raise RenderError("the instance has no pixel data")
        if pixel.tag != 0x7FE00010:
            raise RenderError("float pixel data cannot be rendered")
        if int(dataset.get("BitsAllocated") or 0) == 1:
            # Bit-packed frames (segmentations, overlays stored as images) are not
            # the transcoder's business: pydicom unpacks them.
            stream.seek(0)
            return pixel_array(stream, index=frame)
        [(array, _)] = transcode.decoded_frames(dataset, pixel, [frame])
        return array
    except TranscodeError as error:
        raise RenderError(str(error))
    except RenderError:
        raise
    except Exception as error:  # decoders raise ValueError, RuntimeError, NotImplementedError...
        raise RenderError(f"the pixel data cannot be decoded: {error}")


def _display_values(pixels, header, window):
    photometric = str(header.get("PhotometricInterpretation", "")).strip()
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        values = _grayscale(pixels, header, window)
        return 255 - values if photometric == "MONOCHROME1" else values
    if photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(pixels, header)
        except Exception as error:
            raise RenderError(f"the palette cannot be applied: {error}")
        return _to_8_bits(rgb, 16 if rgb.dtype == np.uint16 else 8)
    if pixels.ndim == 3 and pixels.shape[-1] == 3:
        # RGB, or YBR_* that pydicom already converted to RGB while decoding.
        return _to_8_bits(pixels, int(header.get("BitsStored") or 8))
    raise RenderError(f"photometric interpretation {photometric!r} cannot be rendered")


def _grayscale(pixels, header, window):
    values = apply_modality_lut(pixels, header).astype(np.float64)
    if window is not None:
        return _apply_window(values, window)
    if header.get("VOILUTSequence"):
        bits = header.VOILUTSequence[0].LUTDescriptor[2]
        return _to_8_bits(apply_voi(np.rint(values).astype(np.int64), header), bits)
    stored = _stored_window(header)
    if stored is not None:
        return _apply_window(values, stored)
    # No window anywhere: stretch what the frame holds.
    low, high = float(values.min()), float(values.max())
    return _apply_window(values, Window((low + high) / 2, max(high - low, 1.0), "LINEAR_EXACT"))


def _stored_window(header):
    """The first window of the file (PS3.3 C.11.2.1.2: several are alternatives)."""
    if "WindowCenter" not in header or "WindowWidth" not in header:
        return None
    center, width = header.WindowCenter, header.WindowWidth
    center = center[0] if isinstance(center, MultiValue) else center
    width = width[0] if isinstance(width, MultiValue) else width
    if center is None or width is None or float(width) <= 0:
        return None
    function = str(header.get("VOILUTFunction") or "LINEAR").upper()
    return Window(float(center), float(width), function if function in WINDOW_FUNCTIONS else "LINEAR")


def _apply_window(values, window):
    """PS3.3 C.11.2.1.2.1 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT), C.11.2.1.3.1 (SIGMOID), to 0..255."""
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        scaled = 1.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
    elif window.function == "LINEAR_EXACT":
        scaled = (values - c) / w + 0.5
    elif w <= 1:
        scaled = np.where(values <= c - 0.5, 0.0, 1.0)
    else:
        scaled = (values - (c - 0.5)) / (w - 1) + 0.5
    return np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def _to_8_bits(values, bits):
    if bits <= 8:
        return values.astype(np.uint8)
    return np.rint(values.astype(np.float64) * 255 / (2**bits - 1)).astype(np.uint8)


def stored_frame(stream, frame):
    """(header, values) of one frame as stored: no Modality LUT, no window, no
    inversion (what Orthanc's /image-uint8|uint16|int16 and /numpy start from).
    Raises NoSuchFrame and RenderError as render() does."""
    header = image_header(stream)
    count = frame_count(header)
    if not 0 <= frame < count:
        raise NoSuchFrame(f"frame {frame} does not exist: the instance has {count} frame(s), numbered from 0")
    return header, _decode(stream, header, frame)


def rescale(values, header):
    """The values through the Rescale Slope and Intercept (PS3.3 C.11.1.1.2), as float32."""
    try:
        slope = float(header.get("RescaleSlope", 1) or 1)
        intercept = float(header.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError) as error:
        raise RenderError(f"the rescale slope or intercept is not a number: {error}")
    return values.astype(np.float32) * np.float32(slope) + np.float32(intercept)
