"""One transcoder: a stored DICOM file re-encoded in another transfer syntax.

WADO-RS, WADO-URI, C-MOVE/C-GET sub-operations and the SCU call it when a
client or a peer cannot take what is stored. It streams: the file is read
header first, then one frame at a time (pydicom's decoders read a frame's
fragments from the open file), and what it yields is the header followed by
each re-encoded frame, so a 2 GB multi-frame instance never sits in memory.

Codecs are pydicom 3's decoders and encoders with their plugins: python-gdcm
(JPEG baseline, extended and lossless, JPEG-LS, JPEG 2000), pyjpegls (JPEG-LS),
pylibjpeg-openjpeg (JPEG 2000), pylibjpeg-rle and pydicom itself (RLE), Pillow,
and archive/jpeg12.py, GDCM called directly for 12-bit JPEG Extended. None is
GPL (see the README's dependency list).
"""

import copy
import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.pixels import as_pixel_options, get_decoder, get_encoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEGExtended12Bit,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from archive.errors import TranscodeError

NATIVE = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})
LOSSLESS = frozenset({RLELossless, JPEGLSLossless, JPEG2000Lossless})
LOSSY = frozenset({JPEGLSNearLossless, JPEG2000})
# What the transcoder writes. Deflate and big endian are read, never written:
# no peer needs them and both would need the whole dataset in memory.
TARGETS = NATIVE | LOSSLESS | LOSSY
# PS3.3 C.7.6.1.1.5.1: the method that made an image lossy, recorded in it.
LOSSY_METHODS = {JPEGLSNearLossless: "ISO_14495_1", JPEG2000: "ISO_15444_1"}
# Lossy targets by default: a 10:1 JPEG 2000 and a JPEG-LS error of 2 grey levels.
J2K_RATIO = 10
JLS_ERROR = 2
# One decoded frame larger than this is refused rather than decoded: a
# 30 kB JPEG can claim 65535 x 65535 RGB pixels (issue 19 bounds uploads).
MAX_FRAME_BYTES = 512 * 1024 * 1024
PIXEL_TAGS = {0x7FE00008: "OF", 0x7FE00009: "OD", 0x7FE00010: "OW"}  # VR when the syntax is implicit
CHUNK = 1024 * 1024
# Plugins tried first, in this order, when several can decode a syntax. GDCM
# comes last: it decodes what no other does (JPEG lossless) but aborts the
# whole process, not just the call, on some input (an RLE it cannot encode).
DECODING_PLUGINS = ("pylibjpeg", "pyjpegls", "pydicom", "pillow", "gdcm-12-bit", "gdcm")
ENCODING_PLUGINS = {RLELossless: "pylibjpeg", JPEGLSLossless: "pyjpegls", JPEGLSNearLossless: "pyjpegls",
                    JPEG2000Lossless: "pylibjpeg", JPEG2000: "pylibjpeg"}
ITEM = 0xE000FFFE.to_bytes(4, "little")
SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"

if "gdcm-12-bit" not in get_decoder(JPEGExtended12Bit).available_plugins:
    get_decoder(JPEGExtended12Bit).add_plugin("gdcm-12-bit", ("archive.jpeg12", "decode_frame"))


@dataclass(frozen=True)
class PixelValue:
    """Where the value of the pixel data element lies: `length` is None when undefined (encapsulated)."""

    tag: int
    vr: str
    source: object
    offset: int
    length: int | None


def transcode(stream, target, *, lossy=False) -> Iterator[bytes]:
    """The DICOM file read from `stream` (seekable, at 0) in transfer syntax `target`, as chunks.

    The SOP Instance UID is kept: this is the same instance sent in another
    encoding (PS3.5 §8.2, what Orthanc does for C-MOVE and WADO). A lossy
    target needs `lossy=True` and marks the image Lossy Image Compression "01".
    Raises TranscodeError before the first chunk when the conversion cannot be done.
    """
    target = UID(target)
    dataset, pixel = read_header(stream)
    source = UID(dataset.file_meta.TransferSyntaxUID)
    _check_target(source, target, lossy)
    if source == target:
        return _copy(stream)
    if pixel is None:
        return iter([_header_bytes(dataset, target)])
    if source in NATIVE and target in NATIVE:
        # Native little endian pixel data is the same bytes whatever the VR encoding.
        return _with_native_pixels(dataset, pixel, target)
    frames = decoded_frames(dataset, pixel)
    return _reencoded(dataset, frames, target)


def transcoded_bytes(stream, target, *, lossy=False):
    """The whole transcoded file in memory: for one instance sent over DIMSE, never for a study."""
    return b"".join(transcode(stream, target, lossy=lossy))


def check(source, target, *, lossy=False):
    """Raise TranscodeError, saying why, when `transcode` cannot turn `source` syntax into `target`."""
    _check_target(UID(source), UID(target), lossy)


def can_transcode(source, target, *, lossy=False):
    """Whether `transcode` can turn pixel data in `source` syntax into `target` (codecs installed)."""
    try:
        _check_target(UID(source), UID(target), lossy)
    except TranscodeError:
        return False
    return True


def frames(stream, target, indices, *, lossy=False) -> Iterator[bytes]:
    """The frames numbered `indices` (from 0) of the file's pixel data, each encoded in `target`.

    A native target gives the frame's little endian pixel values (what WADO-RS
    sends as application/octet-stream); a compressed one gives its codestream.
    """
    target = UID(target)
    dataset, pixel = read_header(stream)
    source = UID(dataset.file_meta.TransferSyntaxUID)
    if pixel is None:
        raise TranscodeError("the instance has no pixel data")
    _check_target(source, target, lossy)
    count = frame_count(dataset)
    for index in indices:
        if not 0 <= index < count:
            raise TranscodeError(f"frame {index + 1} does not exist: the instance has {count} frame(s)")
    decoded = decoded_frames(dataset, pixel, indices)
    for array, properties in decoded:
        if target in NATIVE:
            yield _native_bytes(array)
        else:
            yield _encode(array, properties, target)


def read_header(stream, defer_size=None):
    """The dataset up to its pixel data (file meta included), and where the pixel data value lies (or None).

    The pixel data is never read: its place in the file is enough. Values longer
    than `defer_size` are read only when accessed (WADO-RS metadata).
    """
    try:
        dataset = pydicom.dcmread(stream, stop_before_pixels=True, defer_size=defer_size)
    except Exception as error:  # pydicom raises many types on malformed input
        raise TranscodeError(f"the DICOM file cannot be read: {error}")
    if "TransferSyntaxUID" not in dataset.file_meta:
        raise TranscodeError("the file has no transfer syntax in its file meta information")
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
    if syntax.is_implicit_VR or not header[4:6].isalpha():
        # Some writers encode the pixel data element implicitly in an explicit
        # VR file (pydicom's SC_rgb_jpeg.dcm): no VR, a 4-byte length.
        vr, (length,) = PIXEL_TAGS[tag], struct.unpack(f"{endian}L", header[4:])
    else:
        # Pixel data VRs have a 2-byte reserved field and a 4-byte length (PS3.5 §7.1.2).
        vr, (length,) = header[4:6].decode("ascii"), struct.unpack(f"{endian}L", stream.read(4))
    return dataset, PixelValue(tag, vr, stream, stream.tell(), None if length == 0xFFFFFFFF else length)


def frame_count(dataset):
    """NumberOfFrames (IS, PS3.3 C.7.6.6), 1 when absent."""
    try:
        return max(int(dataset.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        raise TranscodeError(f"NumberOfFrames {dataset.get('NumberOfFrames')!r} is not a number")


def decoded_frames(dataset, pixel, indices=None):
    """(array, image pixel properties) for each frame, decoded one at a time from the open file.

    YCbCr is converted to RGB (the properties say so), as every encoder and
    every viewer takes RGB; planar configuration becomes 0.
    """
    if pixel.tag != 0x7FE00010:
        raise TranscodeError("float pixel data is served as stored only")
    syntax = UID(dataset.file_meta.TransferSyntaxUID)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise TranscodeError(f"pixel data in {syntax.name or syntax} cannot be decoded")
    if not decoder.is_available:
        raise TranscodeError(f"no codec is installed for {syntax.name or syntax}")
    options = _pixel_options(dataset, syntax)
    if int(options.get("bits_allocated") or 0) not in (8, 16, 32):
        raise TranscodeError(f"pixel data of {options.get('bits_allocated')} bits allocated is served as stored only")
    count = options["number_of_frames"]
    length = pixel.length
    if length is None:  # encapsulated: the fragments run to the sequence delimiter, near the end
        length = pixel.source.seek(0, io.SEEK_END) - pixel.offset
    source = _PixelWindow(pixel.source, pixel.offset, length)
    # Big endian OW pixel data is byte-swapped in words, OB is not (PS3.5 §7.3).
    options["pixel_vr"] = pixel.vr
    iterator, first = _first_decoded(decoder, source, indices, options)
    if first is None:
        return
    yield first
    try:
        for number, (array, properties) in enumerate(iterator, start=1):
            # A JPEG decoder may find more frames than NumberOfFrames in stray fragments.
            if indices is None and number >= count:
                break
            yield array, properties
    except Exception as error:  # codecs raise ValueError, RuntimeError, OSError...
        raise TranscodeError(f"the pixel data cannot be decoded: {error}")


# --- helpers -----------------------------------------------------------------


def _first_decoded(decoder, source, indices, options):
    """An iterator over the decoded frames, and its first frame, from the first plugin that decodes it.

    The plugins are tried in DECODING_PLUGINS order (pydicom's own order puts
    GDCM first, which aborts the process on some malformed input); the one that
    decoded the first frame decodes the others.
    """
    available = decoder.available_plugins
    plugins = [p for p in DECODING_PLUGINS if p in available] + [p for p in available if p not in DECODING_PLUGINS]
    errors = []
    for plugin in plugins or [""]:
        source.seek(0)
        iterator = decoder.iter_array(source, indices=indices, as_rgb=True, decoding_plugin=plugin, **options)
        try:
            first = next(iterator, None)
        except Exception as error:  # codecs raise ValueError, RuntimeError, OSError...
            errors.append(f"{plugin or 'pydicom'}: {error}")
            continue
        if first is not None:
            array, properties = first
            # Some plugins hand out a read-only view of their buffer.
            first = (array if array.flags.writeable else array.copy(), properties)
        return iterator, first
    raise TranscodeError(f"the pixel data cannot be decoded: {'; '.join(errors)}")


class _PixelWindow(io.RawIOBase):
    """The pixel data value of an open file, as a file of its own starting at 0.

    pydicom reads a native frame at `index * frame length` of its source, and
    encapsulated fragments from the source's start.
    """

    def __init__(self, stream, offset, length):
        self._stream, self._offset, self._length, self._position = stream, offset, length, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._position

    def seek(self, position, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = base + position
        return self._position

    def read(self, size=-1):
        size = self._length - self._position if size is None or size < 0 else size
        size = max(0, min(size, self._length - self._position))
        self._stream.seek(self._offset + self._position)
        data = self._stream.read(size)
        self._position += len(data)
        return data

    def __len__(self):
        return self._length


def _check_target(source, target, lossy):
    if source == target:
        return
    if target not in TARGETS:
        raise TranscodeError(f"pacsweb does not write {target.name or target}; it writes "
                             f"{', '.join(sorted(t.name for t in TARGETS))}")
    if target in LOSSY and not lossy:
        raise TranscodeError(f"{target.name} is lossy and was not asked for explicitly")
    if not (source in NATIVE and target in NATIVE):
        try:
            if not get_decoder(source).is_available:
                raise TranscodeError(f"no codec is installed for {source.name or source}")
        except NotImplementedError:
            raise TranscodeError(f"pixel data in {source.name or source} cannot be decoded")
        if target not in NATIVE and ENCODING_PLUGINS[target] not in get_encoder(target).available_plugins:
            raise TranscodeError(f"no codec is installed to write {target.name}")


def _pixel_options(dataset, syntax):
    try:
        options = as_pixel_options(dataset, transfer_syntax_uid=syntax, pixel_keyword="PixelData")
        rows, columns = int(options["rows"]), int(options["columns"])
        samples, bits = int(options["samples_per_pixel"]), int(options["bits_allocated"])
    except (KeyError, TypeError, ValueError) as error:
        raise TranscodeError(f"the image attributes do not describe the pixel data: {error}")
    if rows * columns * samples * max(bits, 8) // 8 > MAX_FRAME_BYTES:
        raise TranscodeError(f"a frame of {rows} x {columns} x {samples} samples of {bits} bits is too "
                             f"large to decode (more than {MAX_FRAME_BYTES} bytes)")
    if "ExtendedOffsetTable" in dataset and "ExtendedOffsetTableLengths" in dataset:
        options["extended_offsets"] = (dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths)
    return options


def _copy(stream):
    stream.seek(0)
    while chunk := stream.read(CHUNK):
        yield chunk


def _with_native_pixels(dataset, pixel, target):
    yield _header_bytes(dataset, target)
    vr = "OB" if int(dataset.get("BitsAllocated") or 8) <= 8 else "OW"
    yield _element_header(pixel.tag, vr, pixel.length, target)
    pixel.source.seek(pixel.offset)
    remaining = pixel.length
    while remaining > 0:
        chunk = pixel.source.read(min(CHUNK, remaining))
        if not chunk:
            raise TranscodeError("the file ends inside its pixel data")
        remaining -= len(chunk)
        yield chunk
    if pixel.length % 2:
        yield b"\x00"


def _reencoded(dataset, frames, target):
    # The first frame is decoded before anything is written: a codec that fails
    # fails before the caller has sent a byte, and its properties (RGB after
    # YCbCr) go into the header.
    try:
        first, properties = next(frames)
    except StopIteration:
        raise TranscodeError("the pixel data holds no frame")
    header = _output_dataset(dataset, properties, target)
    count = frame_count(dataset)
    if target in NATIVE:
        size = first.nbytes
        if count * size >= 0xFFFFFFFE:
            raise TranscodeError("the decoded pixel data is larger than a DICOM element can hold (4 GB)")
        return _native_out(header, first, frames, target, count * size)
    return _encapsulated_out(header, first, properties, frames, target)


def _native_out(header, first, frames, target, length):
    yield _header_bytes(header, target)
    bits = int(header.BitsAllocated)
    yield _element_header(0x7FE00010, "OB" if bits <= 8 else "OW", length + length % 2, target)
    yield _native_bytes(first)
    del first
    for array, _ in frames:
        yield _native_bytes(array)
    if length % 2:
        yield b"\x00"


def _encapsulated_out(header, first, properties, frames, target):
    yield _header_bytes(header, target)
    yield _element_header(0x7FE00010, "OB", 0xFFFFFFFF, target)
    # PS3.5 A.4: an empty Basic Offset Table item, then one fragment per frame.
    yield ITEM + b"\x00\x00\x00\x00"
    yield _item(_encode(first, properties, target))
    del first
    for array, frame_properties in frames:
        yield _item(_encode(array, frame_properties, target))
    yield SEQUENCE_DELIMITER


def _item(data):
    if len(data) % 2:
        data += b"\x00"
    return ITEM + struct.pack("<L", len(data)) + data


def _native_bytes(array):
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _encode(array, properties, target):
    options = {
        "rows": array.shape[0], "columns": array.shape[1], "number_of_frames": 1,
        "samples_per_pixel": int(properties["samples_per_pixel"]),
        "bits_allocated": int(properties["bits_allocated"]),
        "bits_stored": int(properties["bits_stored"]),
        "pixel_representation": int(properties["pixel_representation"]),
        "photometric_interpretation": properties["photometric_interpretation"],
        "planar_configuration": 0,
    }
    if target in (JPEG2000, JPEG2000Lossless):
        # No multiple-component transform: the image stays RGB, so Photometric
        # Interpretation does not have to become YBR_RCT / YBR_ICT (PS3.5 A.4.4).
        options["use_mct"] = False
    if target == JPEG2000:
        options["j2k_cr"] = [J2K_RATIO]
    if target == JPEGLSNearLossless:
        options["jls_error"] = JLS_ERROR
    try:
        return get_encoder(target).encode(array, encoding_plugin=ENCODING_PLUGINS[target], **options)
    except Exception as error:  # encoders raise ValueError on a profile they do not support, RuntimeError...
        raise TranscodeError(f"the pixel data cannot be encoded as {target.name}: {error}")


def _output_dataset(dataset, properties, target):
    out = copy.deepcopy(dataset)  # the caller's header stays as read
    out.PhotometricInterpretation = properties["photometric_interpretation"]
    out.BitsAllocated = int(properties["bits_allocated"])
    out.BitsStored = int(properties["bits_stored"])
    out.HighBit = int(properties["bits_stored"]) - 1
    out.PixelRepresentation = int(properties["pixel_representation"])
    if int(properties["samples_per_pixel"]) > 1:
        out.PlanarConfiguration = 0
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        # They locate the old fragments; the new ones have an empty Basic Offset Table.
        if keyword in out:
            delattr(out, keyword)
    if target in LOSSY:
        out.LossyImageCompression = "01"
        methods = list(out.get("LossyImageCompressionMethod") or [])
        methods = [methods] if isinstance(methods, str) else methods
        out.LossyImageCompressionMethod = [*methods, LOSSY_METHODS[target]]
    return out


def _header_bytes(dataset, target):
    out = copy.deepcopy(dataset)
    out.file_meta.TransferSyntaxUID = target
    # Elements after the pixel data (trailing padding, digital signatures,
    # which a new encoding invalidates anyway) are not carried over.
    try:
        return _written(out)
    except TypeError:
        # A file whose dataset is implicit VR under an explicit VR syntax (pydicom
        # reads it, with a warning) keeps an original encoding pydicom cannot
        # write from; every value is decoded now, so that encoding is no longer needed.
        for _ in out.iterall():
            pass
        out.set_original_encoding(target.is_implicit_VR, True)
    except Exception as error:
        raise TranscodeError(f"the header cannot be written in {target.name}: {error}")
    try:
        return _written(out)
    except Exception as error:
        raise TranscodeError(f"the header cannot be written in {target.name}: {error}")


def _written(dataset):
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def _element_header(tag, vr, length, target):
    group_element = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if target == ImplicitVRLittleEndian:
        return group_element + struct.pack("<L", length)
    return group_element + vr.encode("ascii") + b"\x00\x00" + struct.pack("<L", length)


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
