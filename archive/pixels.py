"""One frame's pixel values and what a viewer needs to draw them itself: the console's
viewer windows, zooms, measures and plays frames in the browser, so it fetches each
frame once (decoded here when stored compressed) instead of an image per window change.

The answer is one binary message: a little-endian uint32 length, that many bytes of
UTF-8 JSON (the header), then rows × columns × samples values of header["dtype"]
(little endian). Values are stored values; the header carries the rescale (Modality LUT,
PS3.3 C.11.1), the file's windows, geometry (PixelSpacing, ImageOrientationPatient),
overlay planes (60xx, PS3.3 C.9.2) and the frame range, so the client applies the rest.
"""

import base64
import json
import struct

import numpy as np
import pydicom
from pydicom.multival import MultiValue
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from archive import annotations, render
from archive.errors import NoSuchFrame, RenderError
from archive.models import Attachment, Level
from archive.storage import get_storage

DTYPES = {np.dtype("uint8"): "uint8", np.dtype("int8"): "int16", np.dtype("uint16"): "uint16",
          np.dtype("int16"): "int16", np.dtype("uint32"): "float32", np.dtype("int32"): "float32",
          np.dtype("float32"): "float32", np.dtype("float64"): "float32"}


def storage_key(public_id):
    """The key of the instance's file: its identity for caches (a stored file never changes)."""
    return annotations.get_attachment(Level.INSTANCE, public_id, Attachment.DICOM)["storage_key"]


def frame_message(key, index):
    """The binary message of frame `index` (from 0) of the file stored under `key`."""
    with get_storage().open(key) as stream:
        header = render.image_header(stream)
        frames = int(header.get("NumberOfFrames") or 1)
        if not 0 <= index < frames:
            raise NoSuchFrame(f"frame {index + 1} does not exist: the instance has {frames} frame(s)")
        try:
            stream.seek(0)
            if header.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
                # Frame by frame needs the raw dataset; a deflated one exists only inflated, whole.
                values = pixel_array(pydicom.dcmread(stream), index=index)
            else:
                values = pixel_array(stream, index=index)
        except Exception as error:
            raise RenderError(f"the pixel data cannot be decoded: {error}")
        stream.seek(0)
        overlays = _overlays(stream, header) if any(0x6000 <= t.group <= 0x601E and t.group % 2 == 0
                                                    for t in header.keys()) else []
    dtype = DTYPES.get(values.dtype, "float32")
    data = np.ascontiguousarray(values.astype("<" + {"uint8": "u1", "uint16": "u2", "int16": "i2",
                                                     "float32": "f4"}[dtype]))
    photometric = str(header.get("PhotometricInterpretation", "")).strip()
    samples = 3 if values.ndim == 3 and values.shape[-1] == 3 else 1
    description = {
        "rows": int(header.Rows), "columns": int(header.Columns), "frames": frames, "frame": index,
        "samples": samples, "dtype": dtype,
        # pydicom converts YBR to RGB while decoding; a palette is not applied here.
        "photometric": "RGB" if samples == 3 else photometric,
        "slope": _number(header.get("RescaleSlope"), 1.0), "intercept": _number(header.get("RescaleIntercept"), 0.0),
        "min": float(values.min()) if values.size else 0.0, "max": float(values.max()) if values.size else 0.0,
        "windows": _windows(header), "modality": str(header.get("Modality", "")),
        "pixel_spacing": _numbers(header.get("PixelSpacing") or header.get("ImagerPixelSpacing")),
        "spacing_kind": "PixelSpacing" if header.get("PixelSpacing") else
                        "ImagerPixelSpacing" if header.get("ImagerPixelSpacing") else "",
        "orientation": _numbers(header.get("ImageOrientationPatient")),
        "frame_time": _number(header.get("FrameTime"), 0.0),
        "cine_rate": _number(header.get("CineRate") or header.get("RecommendedDisplayFrameRate"), 0.0),
        "overlays": overlays,
    }
    text = json.dumps(description).encode()
    return struct.pack("<I", len(text)) + text + data.tobytes()


def _windows(header):
    """The file's windows (PS3.3 C.11.2.1.2: several are alternatives), with their names."""
    centers, widths = header.get("WindowCenter"), header.get("WindowWidth")
    if centers is None or widths is None:
        return []
    centers = list(centers) if isinstance(centers, MultiValue) else [centers]
    widths = list(widths) if isinstance(widths, MultiValue) else [widths]
    names = header.get("WindowCenterWidthExplanation")
    names = list(names) if isinstance(names, MultiValue) else [names] if names else []
    found = []
    for n, (center, width) in enumerate(zip(centers, widths)):
        try:
            center, width = float(center), float(width)
        except (TypeError, ValueError):
            continue
        if width > 0:
            found.append({"center": center, "width": width, "name": str(names[n]) if n < len(names) else ""})
    return found


def _overlays(stream, header):
    """Overlay planes (60xx) of the frame as packed bits (row by row, base64), with their
    origin (1-based, PS3.3 C.9.2.1.1)."""
    dataset = pydicom.dcmread(stream)
    found = []
    for group in range(0x6000, 0x6020, 2):
        if (group, 0x3000) not in dataset:
            continue
        try:
            bits = dataset.overlay_array(group)
        except Exception:  # an overlay pydicom cannot read is not drawn
            continue
        if bits.ndim == 3:
            bits = bits[0]
        origin = dataset.get((group, 0x0050))
        origin = list(origin.value) if origin is not None else [1, 1]
        found.append({"rows": int(bits.shape[0]), "columns": int(bits.shape[1]),
                      "origin": [int(origin[0]), int(origin[1])],
                      "bits": base64.b64encode(np.packbits(bits.astype(bool), axis=None).tobytes()).decode()})
    return found


def _number(value, default):
    try:
        value = value[0] if isinstance(value, MultiValue) else value
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _numbers(value):
    try:
        return [float(v) for v in value] if value else []
    except (TypeError, ValueError):
        return []
