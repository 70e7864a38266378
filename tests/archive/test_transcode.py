"""archive.transcode: pydicom's own test files, decoded and re-encoded, pixels compared with pydicom's decode."""

import io
import os
import subprocess
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from archive import transcode
from archive.errors import TranscodeError
from tests.dicomgen import pydicom_test_files

# Files pydicom decodes but the transcoder refuses, each for a reason it states.
REFUSED = {
    # 1 bit allocated: frames are not byte aligned; native little endian is served as stored.
    "liver_expb_1frame.dcm",
}
# Sources of every kind the compressors take: 8 and 16 bits, signed and unsigned, grey and colour, several frames.
COMPRESSIBLE = ["CT_small.dcm", "MR_small.dcm", "MR_small_jp2klossless.dcm", "SC_rgb.dcm", "SC_rgb_rle_2frame.dcm",
                "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle_16bit_2frame.dcm", "US1_J2KR.dcm", "JPEG2000.dcm"]


def decodable_images():
    """(name, path) of each test file with pixel data that pydicom itself decodes."""
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in pydicom_test_files():
            try:
                dataset = pydicom.dcmread(path)
                dataset.pixel_array
            except Exception:
                continue
            found.append(pytest.param(path, id=os.path.relpath(path, os.path.dirname(get_testdata_file("CT_small.dcm")))))
    return found


def reference_pixels(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path).pixel_array


def transcoded(path, target, **options):
    with open(path, "rb") as stream:
        data = transcode.transcoded_bytes(stream, target, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


@pytest.mark.parametrize("path", decodable_images())
@pytest.mark.parametrize("target", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_every_stored_syntax_decodes_to_native_pixels_equal_to_pydicoms(path, target):
    if os.path.basename(path) in REFUSED:
        with pytest.raises(TranscodeError):
            transcoded(path, target)
        return
    result = transcoded(path, target)

    assert result.file_meta.TransferSyntaxUID == target
    assert np.array_equal(result.pixel_array, reference_pixels(path))


def existing(names):
    return [name for name in names if os.path.isfile(get_testdata_file(name) or "")]


@pytest.mark.parametrize("name", existing(COMPRESSIBLE))
@pytest.mark.parametrize("target", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_lossless_targets_keep_every_pixel(name, target):
    path = get_testdata_file(name)
    original = pydicom.dcmread(path)

    result = transcoded(path, target)

    assert result.file_meta.TransferSyntaxUID == target
    assert result.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(result.pixel_array, reference_pixels(path))


def test_a_compressed_file_can_be_compressed_again_from_its_decoded_frames():
    path = get_testdata_file("SC_rgb_rle_2frame.dcm")

    result = transcoded(path, JPEG2000Lossless)

    assert int(result.NumberOfFrames) == 2
    assert np.array_equal(result.pixel_array, reference_pixels(path))


@pytest.mark.parametrize("target", [JPEG2000, JPEGLSNearLossless])
def test_lossy_targets_are_refused_unless_asked(target):
    path = get_testdata_file("CT_small.dcm")
    with open(path, "rb") as stream, pytest.raises(TranscodeError, match="lossy"):
        transcode.transcoded_bytes(stream, target)
    assert not transcode.can_transcode(ExplicitVRLittleEndian, target)


@pytest.mark.parametrize("target", [JPEG2000, JPEGLSNearLossless])
def test_lossy_targets_when_asked_mark_the_image_lossy(target):
    path = get_testdata_file("CT_small.dcm")

    result = transcoded(path, target, lossy=True)

    assert result.LossyImageCompression == "01"
    assert result.file_meta.TransferSyntaxUID == target
    difference = np.abs(result.pixel_array.astype(np.int64) - reference_pixels(path).astype(np.int64))
    assert difference.mean() < 50  # close to the original, not equal


def test_same_syntax_is_the_stored_bytes():
    path = get_testdata_file("MR_small_RLE.dcm")
    with open(path, "rb") as stream:
        assert transcode.transcoded_bytes(stream, RLELossless) == open(path, "rb").read()


def test_frames_are_cut_and_encoded_one_by_one():
    path = get_testdata_file("SC_rgb_rle_2frame.dcm")
    reference = reference_pixels(path)

    with open(path, "rb") as stream:
        second, = transcode.frames(stream, ExplicitVRLittleEndian, [1])

    assert second == reference[1].astype("<u1").tobytes()


def test_a_missing_frame_is_refused():
    with open(get_testdata_file("CT_small.dcm"), "rb") as stream, pytest.raises(TranscodeError, match="frame 2"):
        list(transcode.frames(stream, ExplicitVRLittleEndian, [1]))


def test_the_transcoded_file_is_yielded_frame_by_frame():
    path = get_testdata_file("SC_rgb_rle_2frame.dcm")
    with open(path, "rb") as stream:
        chunks = list(transcode.transcode(stream, ExplicitVRLittleEndian))
    frame_size = 100 * 100 * 3
    # Header, pixel data element header, then each frame on its own.
    assert [len(chunk) for chunk in chunks[-2:]] == [frame_size, frame_size]


def test_the_test_files_cover_every_compressed_syntax_the_issue_names():
    syntaxes = {str(pydicom.dcmread(p.values[0], stop_before_pixels=True).file_meta.TransferSyntaxUID)
                for p in decodable_images()}
    assert {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
            "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5"} <= syntaxes


@pytest.mark.parametrize("name", ["JPEG-lossy.dcm", "JPGExtended.dcm"])
def test_twelve_bit_jpeg_extended_decodes_as_dcmtk_decodes_it(name, tmp_path):
    # pydicom's own decoders leave 12-bit JPEG out (its GDCM plugin refuses it,
    # pylibjpeg-libjpeg is GPL): DCMTK's dcmdjpeg, an independent IJG build, is the reference.
    path = get_testdata_file(name)
    subprocess.run(["dcmdjpeg", path, str(tmp_path / "plain.dcm")], check=True, capture_output=True)
    expected = pydicom.dcmread(tmp_path / "plain.dcm").pixel_array

    result = transcoded(path, ExplicitVRLittleEndian)
    with open(path, "rb") as stream:
        frame, = transcode.frames(stream, ExplicitVRLittleEndian, [0])

    assert result.BitsStored == 12
    assert np.array_equal(result.pixel_array, expected)
    assert frame == expected.astype("<u2").tobytes()
    assert expected.std() > 0  # an image, not a blank the two decoders would agree on


def test_a_twelve_bit_jpeg_that_does_not_decode_is_refused_not_fatal(tmp_path):
    # GDCM answers no buffer (no exception) for a codestream it cannot decode.
    dataset = pydicom.dcmread(get_testdata_file("JPGExtended.dcm"))
    codestream = next(generate_frames(dataset.PixelData, number_of_frames=1))
    dataset.PixelData = encapsulate([codestream[: len(codestream) // 2]])
    dataset.save_as(tmp_path / "truncated.dcm", enforce_file_format=True)

    with open(tmp_path / "truncated.dcm", "rb") as stream, pytest.raises(TranscodeError, match="cannot decode"):
        transcode.transcoded_bytes(stream, ExplicitVRLittleEndian)
