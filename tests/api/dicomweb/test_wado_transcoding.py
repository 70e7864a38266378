"""WADO-RS and WADO-URI content negotiation (PS3.18 §8.7) over instances stored in every compressed syntax."""

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import get_decoder

from tests.api.dicomweb.support import pydicom_file, read_parts, store, variant
from tests.dicomgen import make_ultrasound_jpeg


EXPLICIT = "1.2.840.10008.1.2.1"
# One file per stored syntax the issue names, from pydicom's test files.
STORED = {
    "1.2.840.10008.1.2.4.90": "MR_small_jp2klossless.dcm",
    "1.2.840.10008.1.2.4.91": "JPEG2000.dcm",
    "1.2.840.10008.1.2.4.50": "SC_rgb_jpeg_dcmtk.dcm",
    "1.2.840.10008.1.2.4.51": "JPGExtended.dcm",  # 12 bits, through archive/jpeg12.py
    "1.2.840.10008.1.2.4.70": "SC_rgb_jpeg_gdcm.dcm",
    "1.2.840.10008.1.2.4.80": "MR_small_jpeg_ls_lossless.dcm",
    "1.2.840.10008.1.2.5": "SC_rgb_rle_2frame.dcm",
    EXPLICIT: "CT_small.dcm",
}
ANY_SYNTAX = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def stored_instance(api, name):
    path = pydicom_file(name)
    store(api, open(path, "rb").read())
    ds = pydicom.dcmread(path)
    return ds, (f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}")


def first_frame_pixels(ds):
    return ds.pixel_array[0] if int(ds.get("NumberOfFrames") or 1) > 1 else ds.pixel_array


@pytest.mark.parametrize("syntax", STORED)
def test_transfer_syntax_star_returns_the_stored_frame(api, syntax):
    ds, instance = stored_instance(api, STORED[syntax])

    response = api.get(instance + "/frames/1", HTTP_ACCEPT=ANY_SYNTAX)

    assert response.status_code == 200
    [(headers, frame)] = read_parts(response)
    assert headers == f"Content-Type: application/octet-stream; transfer-syntax={syntax}"
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        assert frame == next(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames") or 1)))
    else:
        assert frame == first_frame_pixels(ds).tobytes()


@pytest.mark.parametrize("syntax", STORED)
def test_without_accept_frames_are_explicit_vr_little_endian_equal_to_pydicoms_decode(api, syntax):
    ds, instance = stored_instance(api, STORED[syntax])

    response = api.get(instance + "/frames/1")

    assert response.status_code == 200
    [(headers, frame)] = read_parts(response)
    assert headers == f"Content-Type: application/octet-stream; transfer-syntax={EXPLICIT}"
    expected = first_frame_pixels(ds)
    assert np.array_equal(np.frombuffer(frame, dtype=expected.dtype).reshape(expected.shape), expected)


@pytest.mark.parametrize("syntax", STORED)
@pytest.mark.parametrize("media_type, pil_format", [("image/jpeg", "JPEG"), ("image/png", "PNG")])
def test_frames_as_images_a_browser_shows(api, syntax, media_type, pil_format):
    ds, instance = stored_instance(api, STORED[syntax])

    response = api.get(instance + "/frames/1", HTTP_ACCEPT=f'multipart/related; type="{media_type}"')

    assert response.status_code == 200, response.content[:300]
    [(headers, frame)] = read_parts(response)
    assert headers.startswith(f"Content-Type: {media_type}")
    image = Image.open(io.BytesIO(frame))
    assert (image.format, image.size) == (pil_format, (ds.Columns, ds.Rows))


def test_frames_of_a_multiframe_jpeg_colour_ultrasound_as_stored_and_decoded(api):
    # What OHIF asks of a colour cine loop: several frames in one request, as stored or decoded.
    data = make_ultrasound_jpeg()
    store(api, data)
    ds = pydicom.dcmread(io.BytesIO(data))
    instance = (f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}")
    codestreams = list(generate_frames(ds.PixelData, number_of_frames=20))

    stored = read_parts(api.get(instance + "/frames/1,7,20", HTTP_ACCEPT=ANY_SYNTAX))
    decoded = read_parts(api.get(instance + "/frames/2,20"))

    assert stored == [(f"Content-Type: application/octet-stream; transfer-syntax={ds.file_meta.TransferSyntaxUID}",
                       codestreams[n]) for n in (0, 6, 19)]
    explicit = f"Content-Type: application/octet-stream; transfer-syntax={EXPLICIT}"
    assert [headers for headers, _ in decoded] == [explicit, explicit]
    # YBR_FULL_422 comes out as RGB, as pydicom decodes it.
    pixels = [np.frombuffer(frame, dtype=np.uint8).reshape(256, 256, 3) for _, frame in decoded]
    assert np.array_equal(pixels[0], ds.pixel_array[1]) and np.array_equal(pixels[1], ds.pixel_array[19])
    assert not np.array_equal(pixels[0], pixels[1])


def test_a_named_syntax_is_transcoded(api):
    ds, instance = stored_instance(api, "CT_small.dcm")
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.90'

    [(headers, frame)] = read_parts(api.get(instance + "/frames/1", HTTP_ACCEPT=accept))

    assert headers.endswith("transfer-syntax=1.2.840.10008.1.2.4.90")
    decoded = get_decoder("1.2.840.10008.1.2.4.90").as_array(
        encapsulate([frame]), rows=ds.Rows, columns=ds.Columns, samples_per_pixel=1, bits_allocated=16, bits_stored=16,
        pixel_representation=ds.PixelRepresentation, photometric_interpretation="MONOCHROME2", number_of_frames=1)[0]
    assert np.array_equal(decoded, ds.pixel_array)


@pytest.mark.parametrize("accept, syntax", [
    ('multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.80; q=0.5, '
     'multipart/related; type="application/octet-stream"; transfer-syntax=*; q=0.9', "1.2.840.10008.1.2.5"),
    ('multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.80; q=0.9, '
     'multipart/related; type="application/octet-stream"; transfer-syntax=*; q=0.5', "1.2.840.10008.1.2.4.80"),
    ('multipart/related; type="application/octet-stream"; transfer-syntax=*; q=0, '
     'multipart/related; type="application/octet-stream"', EXPLICIT),
])
def test_q_values_order_the_choices(api, accept, syntax):
    _, instance = stored_instance(api, "MR_small_RLE.dcm")

    [(headers, _)] = read_parts(api.get(instance + "/frames/1", HTTP_ACCEPT=accept))

    assert headers.endswith(f"transfer-syntax={syntax}")


def test_an_unproducible_syntax_alone_is_406(api):
    _, instance = stored_instance(api, "MR_small_RLE.dcm")
    # No JPEG baseline encoder for DICOM frames, and image/jp2 cannot carry a JPEG-LS syntax.
    for accept in ('multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.50',
                   'multipart/related; type="image/jp2"; transfer-syntax=1.2.840.10008.1.2.4.80'):
        response = api.get(instance + "/frames/1", HTTP_ACCEPT=accept)
        assert response.status_code == 406
        assert "cannot be produced" in response.json()["Details"]


def test_instances_without_accept_come_in_explicit_vr_little_endian(api):
    ds, instance = stored_instance(api, "MR_small_jp2klossless.dcm")

    [(headers, content)] = read_parts(api.get(instance))

    assert headers == f"Content-Type: application/dicom; transfer-syntax={EXPLICIT}"
    received = pydicom.dcmread(io.BytesIO(content))
    assert received.file_meta.TransferSyntaxUID == EXPLICIT
    assert received.SOPInstanceUID == ds.SOPInstanceUID
    assert np.array_equal(received.pixel_array, ds.pixel_array)


def test_instances_with_transfer_syntax_star_are_the_stored_bytes(api):
    path = pydicom_file("MR_small_jp2klossless.dcm")
    _, instance = stored_instance(api, "MR_small_jp2klossless.dcm")

    [(headers, content)] = read_parts(api.get(
        instance, HTTP_ACCEPT='multipart/related; type="application/dicom"; transfer-syntax=*'))

    assert headers.endswith("transfer-syntax=1.2.840.10008.1.2.4.90")
    assert content == open(path, "rb").read()


def test_wado_uri_transcodes_to_the_transfer_syntax_asked(api):
    ds, _ = stored_instance(api, "MR_small_jpeg_ls_lossless.dcm")

    response = api.get("/wado", {"requestType": "WADO", "studyUID": ds.StudyInstanceUID,
                                 "seriesUID": ds.SeriesInstanceUID, "objectUID": ds.SOPInstanceUID,
                                 "contentType": "application/dicom", "transferSyntax": EXPLICIT})

    assert response.status_code == 200
    received = pydicom.dcmread(io.BytesIO(b"".join(response.streaming_content)))
    assert received.file_meta.TransferSyntaxUID == EXPLICIT
    assert np.array_equal(received.pixel_array, ds.pixel_array)


def test_an_instance_that_cannot_be_decoded_is_left_out_of_a_study_already_streaming(api):
    # 1 bit allocated, big endian: frames not byte aligned, served as stored only (archive.transcode).
    study_uid = "1.2.826.0.1.3680043.8.498.4242"
    names = ("CT_small.dcm", "liver_expb_1frame.dcm")
    files = [variant(open(pydicom_file(name), "rb").read(), f"{study_uid}.{n}", StudyInstanceUID=study_uid,
                     SeriesInstanceUID=f"{study_uid}.{n}.1") for n, name in enumerate(names)]
    for data in files:
        store(api, data)
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT}'

    parts = read_parts(api.get(f"/dicom-web/studies/{study_uid}", HTTP_ACCEPT=accept))

    assert [pydicom.dcmread(io.BytesIO(content)).SOPInstanceUID for _, content in parts] == [f"{study_uid}.0"]
    alone = api.get(f"/dicom-web/studies/{study_uid}/series/{study_uid}.1.1", HTTP_ACCEPT=accept)
    assert alone.status_code == 406
