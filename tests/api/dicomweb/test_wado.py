"""WADO-RS: instances, metadata, bulk data and frames, compared with what was stored."""

import pydicom
import pytest
from pydicom.encaps import generate_frames

from tests.dicomgen import make_instance, uid
from tests.api.dicomweb.support import (
    dataset, pydicom_file, read_parts, store, streamed_json, study, tag, value, variant,
)


STUDY, SERIES = uid("P1", "s1"), uid("P1", "s1", "series")


def sop(data):
    return dataset(data).SOPInstanceUID


def url(*parts):
    return "/dicom-web/studies/" + "/".join(parts)


def test_study_comes_back_as_multipart_with_the_stored_bytes(api):
    files = study(api, 3)
    response = api.get(url(STUDY))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith('multipart/related; type="application/dicom"')
    parts = read_parts(response)
    assert [content for _, content in parts] == files
    assert parts[0][0] == "Content-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1"


def test_series_and_instance_levels(api):
    files = study(api, 2)
    study(api, 1, key="other")
    assert [c for _, c in read_parts(api.get(url(STUDY, "series", SERIES)))] == files
    [(_, content)] = read_parts(api.get(url(STUDY, "series", SERIES, "instances", sop(files[1]))))
    assert content == files[1]


def test_unknown_resources_are_404(api):
    files = study(api, 1)
    assert api.get(url("1.2.3")).status_code == 404
    assert api.get(url(STUDY, "series", "1.2.3")).status_code == 404
    assert api.get(url("1.2.3", "series", SERIES, "instances", sop(files[0]))).status_code == 404


@pytest.mark.parametrize("accept, status", [
    ('multipart/related; type="application/dicom"', 200),
    ('multipart/related; type="application/dicom"; transfer-syntax=*', 200),
    ('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1', 200),
    # No JPEG baseline encoder: nothing acceptable can be produced.
    ('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50', 406),
    ('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50, */*', 200),
])
def test_a_syntax_that_cannot_be_produced_is_406_only_when_nothing_else_is_accepted(api, accept, status):
    study(api, 1)
    response = api.get(url(STUDY), HTTP_ACCEPT=accept)
    assert response.status_code == status
    if status == 406:
        assert "cannot be produced" in response.json()["Details"]


def test_other_media_types_are_406(api):
    study(api, 1)
    response = api.get(url(STUDY), HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 406
    assert 'type="application/dicom"' in response.json()["Details"]


def test_metadata_replaces_bulk_data_by_uris_that_serve_it(api):
    icc = bytes(range(256)) * 8
    data = variant(make_instance(), uid("with icc"), ICCProfile=icc)
    store(api, data)
    ds = dataset(data)
    instance = url(ds.StudyInstanceUID, "series", ds.SeriesInstanceUID, "instances", ds.SOPInstanceUID)
    response = api.get(instance + "/metadata")
    assert response["Content-Type"] == "application/dicom+json"
    [answer] = streamed_json(response)
    assert answer[tag("PatientName")] == {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}
    assert value(answer, "InstanceNumber") == [1] and value(answer, "RescaleIntercept") == [-1024]
    assert value(answer, "StudyInstanceUID") == [ds.StudyInstanceUID]
    pixel_uri = answer[tag("PixelData")]["BulkDataURI"]
    icc_uri = answer[tag("ICCProfile")]["BulkDataURI"]
    assert pixel_uri == f"http://testserver{instance}/bulk/7fe00010"  # lower case, as Orthanc
    [(headers, pixels)] = read_parts(api.get(pixel_uri))
    assert headers == "Content-Type: application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    assert pixels == dataset(data).PixelData
    [(_, profile)] = read_parts(api.get(icc_uri))
    assert profile == icc


def test_metadata_of_a_study_lists_every_instance(api):
    files = study(api, 3)
    answers = streamed_json(api.get(url(STUDY, "metadata")))
    assert [value(a, "SOPInstanceUID") for a in answers] == [[sop(f)] for f in files]
    assert len(streamed_json(api.get(url(STUDY, "series", SERIES, "metadata")))) == 3


def test_small_binary_values_stay_inline(api):
    data = variant(make_instance(), uid("small icc"), ICCProfile=b"\x01\x02\x03\x04")
    store(api, data)
    ds = dataset(data)
    [answer] = streamed_json(api.get(url(ds.StudyInstanceUID, "series", ds.SeriesInstanceUID, "instances",
                                         ds.SOPInstanceUID, "metadata")))
    assert answer[tag("ICCProfile")] == {"vr": "OB", "InlineBinary": "AQIDBA=="}


def test_bulk_of_an_attribute_that_is_not_there_is_404(api):
    files = study(api, 1)
    response = api.get(url(STUDY, "series", SERIES, "instances", sop(files[0]), "bulk", "00282000"))
    assert response.status_code == 404


def multiframe(api, frames=3):
    """A 3-frame 8x8 16-bit image; returns (file bytes, instance URL)."""
    frame_size = 8 * 8 * 2
    pixels = bytes((n * 7 + n // frame_size) % 256 for n in range(frames * frame_size))
    data = variant(make_instance(rows=8, columns=8), uid("multiframe"), NumberOfFrames=frames, PixelData=pixels)
    store(api, data)
    ds = dataset(data)
    return data, url(ds.StudyInstanceUID, "series", ds.SeriesInstanceUID, "instances", ds.SOPInstanceUID)


def test_uncompressed_frames_are_the_bytes_of_those_frames(api):
    data, instance = multiframe(api)
    pixels, size = dataset(data).PixelData, 8 * 8 * 2
    response = api.get(instance + "/frames/2,3")
    assert response.status_code == 200
    assert response["Content-Type"].startswith('multipart/related; type="application/octet-stream"')
    parts = read_parts(response)
    assert [content for _, content in parts] == [pixels[size:2 * size], pixels[2 * size:3 * size]]


def test_frames_outside_the_instance_are_404_and_bad_lists_400(api):
    _, instance = multiframe(api)
    assert api.get(instance + "/frames/4").status_code == 404
    assert api.get(instance + "/frames/0").status_code == 400
    assert api.get(instance + "/frames/1,,2").status_code == 400


def test_compressed_frames_are_sent_as_stored_with_their_media_type(api):
    data = open(pydicom_file("SC_rgb_rle_2frame.dcm"), "rb").read()
    store(api, data)
    ds = pydicom.dcmread(pydicom_file("SC_rgb_rle_2frame.dcm"))
    instance = url(ds.StudyInstanceUID, "series", ds.SeriesInstanceUID, "instances", ds.SOPInstanceUID)
    response = api.get(instance + "/frames/1,2", HTTP_ACCEPT='multipart/related; type="image/dicom-rle"')
    assert response["Content-Type"].startswith('multipart/related; type="image/dicom-rle"')
    parts = read_parts(response)
    assert [content for _, content in parts] == list(generate_frames(ds.PixelData, number_of_frames=2))
    assert parts[0][0] == "Content-Type: image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5"
    # The pixel data's BulkDataURI serves the same frames to whoever takes any syntax.
    bulk = read_parts(api.get(instance + "/bulk/7FE00010",
                              HTTP_ACCEPT='multipart/related; type="application/octet-stream"; transfer-syntax=*'))
    assert [content for _, content in bulk] == [content for _, content in parts]


def test_frames_of_an_implicit_vr_file(api):
    path = pydicom_file("MR_small_implicit.dcm")
    store(api, open(path, "rb").read())
    ds = pydicom.dcmread(path)
    instance = url(ds.StudyInstanceUID, "series", ds.SeriesInstanceUID, "instances", ds.SOPInstanceUID)
    [(_, frame)] = read_parts(api.get(instance + "/frames/1"))
    assert frame == ds.PixelData
    [answer] = streamed_json(api.get(instance + "/metadata"))
    assert answer[tag("PixelData")]["vr"] == "OW"


def test_frames_and_metadata_of_a_deflated_file(api):
    path = pydicom_file("image_dfl.dcm")
    store(api, open(path, "rb").read())
    ds = pydicom.dcmread(path)
    instance = url(ds.StudyInstanceUID, "series", ds.SeriesInstanceUID, "instances", ds.SOPInstanceUID)
    [(_, frame)] = read_parts(api.get(instance + "/frames/1"))
    assert frame == ds.PixelData
    [answer] = streamed_json(api.get(instance + "/metadata"))
    assert value(answer, "Rows") == [ds.Rows] and "BulkDataURI" in answer[tag("PixelData")]


def test_frames_of_an_instance_without_pixel_data_are_404(api):
    path = pydicom_file("test-SR.dcm")
    store(api, open(path, "rb").read())
    ds = pydicom.dcmread(path)
    instance = url(ds.StudyInstanceUID, "series", ds.SeriesInstanceUID, "instances", ds.SOPInstanceUID)
    assert api.get(instance + "/frames/1").status_code == 404
    [answer] = streamed_json(api.get(instance + "/metadata"))
    assert tag("PixelData") not in answer
    assert answer[tag("ContentSequence")]["vr"] == "SQ"


@pytest.mark.parametrize("count", [1, 20])
def test_retrieve_and_metadata_cost_the_same_queries_for_one_or_many_instances(
        api, count, django_assert_max_num_queries):
    study(api, count)
    # Three (the remembered Basic credentials checked by the instances' own), plus the
    # audit trail's: the study's id by its UID (once per process) and the check for
    # this user's read of the study in its window.
    with django_assert_max_num_queries(5):
        assert len(read_parts(api.get(url(STUDY)))) == count
    with django_assert_max_num_queries(5):
        assert len(streamed_json(api.get(url(STUDY, "metadata")))) == count


def test_a_number_that_does_not_parse_does_not_break_metadata_frames_or_rendering(api):
    # badVR.dcm has NumberOfFrames "1A".
    path = pydicom_file("badVR.dcm")
    store(api, open(path, "rb").read())
    ds = pydicom.dcmread(path)
    instance = url(ds.StudyInstanceUID, "series", ds.SeriesInstanceUID, "instances", ds.SOPInstanceUID)
    [answer] = streamed_json(api.get(instance + "/metadata"))
    assert answer[tag("NumberOfFrames")] == {"vr": "IS", "Value": ["1A"]}
    for resource in ("/frames/1", "/rendered"):
        response = api.get(instance + resource)
        assert response.status_code == 406
        assert "1A" in response.json()["Details"]
