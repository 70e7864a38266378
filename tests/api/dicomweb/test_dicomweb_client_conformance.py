"""Every QIDO, WADO and STOW operation dicomweb-client offers, against a real server, results asserted.

test_dicomweb_client.py covers the plain store / search / retrieve; this module
covers the rest: the iterators, bulk data, series and study metadata, rendered
frames and series, paging, fuzzy matching, empty searches, and a compressed
instance asked in its stored syntax, decompressed and in another syntax. The
delete operations are not DICOMweb (dicomweb-client sends DELETE, which PS3.18
does not define) and are checked to be refused.
"""

import io

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from PIL import Image

from tests import servers
from tests.dicomgen import make_instance, pydicom_test_files, uid

KEY = "CONFORMANCE"
STUDY, SERIES = uid(KEY, "study"), uid(KEY, "series")
J2K = "1.2.840.10008.1.2.4.90"
EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    node = servers.Server(tmp_path_factory.mktemp("dicomweb-conformance"))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def client(server):
    session = requests.Session()
    session.auth = ("admin", servers.ADMIN_PASSWORD)
    with session:
        client = DICOMwebClient(server.url + "/dicom-web", session=session)
        client.store_instances(STORED + [COMPRESSED])
        yield client


def instances():
    return [pydicom.dcmread(io.BytesIO(make_instance(
        patient_id=KEY, patient_name="CONFORMANCE^CARLA", study_uid=STUDY, series_uid=SERIES, instance_number=n + 1,
        rows=32, columns=32))) for n in range(3)]


def compressed():
    ds = pydicom.dcmread(next(p for p in pydicom_test_files() if p.endswith("/MR_small_jp2klossless.dcm")))
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "CONFORMANCE-J2K", uid(KEY, "j2k"), uid(KEY, "j2k", "s")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid(KEY, "j2k", "i")
    return ds


STORED, COMPRESSED = instances(), compressed()
WHERE = (COMPRESSED.StudyInstanceUID, COMPRESSED.SeriesInstanceUID, COMPRESSED.SOPInstanceUID)


def uids(datasets):
    return sorted(ds.SOPInstanceUID for ds in datasets)


def test_iter_study_and_iter_series_stream_every_instance(client):
    assert uids(client.iter_study(STUDY)) == uids(STORED)
    assert uids(client.iter_series(STUDY, SERIES)) == uids(STORED)


def test_study_and_series_metadata(client):
    for metadata in (client.retrieve_study_metadata(STUDY), client.retrieve_series_metadata(STUDY, SERIES)):
        assert sorted(item["00080018"]["Value"][0] for item in metadata) == uids(STORED)
        assert all("BulkDataURI" in item["7FE00010"] for item in metadata)


def test_bulk_data_by_its_uri(client):
    metadata = client.retrieve_instance_metadata(STUDY, SERIES, STORED[0].SOPInstanceUID)
    uri = metadata["7FE00010"]["BulkDataURI"]
    # dicomweb-client sends Host without the port: the URI still leads back here.
    assert uri.startswith(client.base_url + "/studies/")
    assert client.retrieve_bulkdata(uri) == [STORED[0].PixelData]
    assert list(client.iter_bulkdata(uri)) == [STORED[0].PixelData]


def test_iter_instance_frames(client):
    assert list(client.iter_instance_frames(STUDY, SERIES, STORED[1].SOPInstanceUID, [1])) == [STORED[1].PixelData]


def test_rendered_frames_and_series(client):
    frame = client.retrieve_instance_frames_rendered(STUDY, SERIES, STORED[0].SOPInstanceUID, [1],
                                                     media_types=("image/jpeg",))
    assert Image.open(io.BytesIO(frame)).size == (32, 32)
    series = client.retrieve_series_rendered(STUDY, SERIES, media_types=("image/png",))
    assert Image.open(io.BytesIO(series)).format == "PNG"


def test_paging_and_fields(client):
    first = client.search_for_instances(STUDY, SERIES, limit=2, offset=0, fields=["StudyDescription"])
    rest = client.search_for_instances(STUDY, SERIES, limit=2, offset=2)
    assert len(first) == 2 and len(rest) == 1
    assert first[0]["00081030"]["Value"] == ["CT CHEST"]
    assert sorted(i["00080018"]["Value"][0] for i in first + rest) == uids(STORED)
    every = client.search_for_instances(STUDY, SERIES, limit=1, get_remaining=True)
    assert len(every) == 3


def test_instances_carry_the_image_attributes_a_viewer_needs(client):
    [answer] = client.search_for_instances(*WHERE[:2])
    assert (answer["00280010"]["Value"], answer["00280011"]["Value"], answer["00280100"]["Value"]) == \
        ([COMPRESSED.Rows], [COMPRESSED.Columns], [COMPRESSED.BitsAllocated])


def test_fuzzy_matching_and_an_empty_search(client):
    [study] = client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": "carla"})
    assert study["0020000D"]["Value"] == [STUDY]
    assert client.search_for_studies(search_filters={"PatientID": "NOBODY"}) == []
    assert client.search_for_series(search_filters={"Modality": "XA"}) == []


def test_a_compressed_instance_as_stored_decompressed_or_in_another_syntax(client):
    as_stored = client.retrieve_instance(*WHERE, media_types=(("application/dicom", "*"),))
    assert as_stored.file_meta.TransferSyntaxUID == J2K and as_stored.PixelData == COMPRESSED.PixelData

    # dicomweb-client asks transfer-syntax=* unless told otherwise.
    assert client.retrieve_instance(*WHERE).PixelData == COMPRESSED.PixelData

    explicit = client.retrieve_instance(*WHERE, media_types=(("application/dicom", EXPLICIT),))
    assert explicit.file_meta.TransferSyntaxUID == EXPLICIT
    assert np.array_equal(explicit.pixel_array, COMPRESSED.pixel_array)

    rle = client.retrieve_instance(*WHERE, media_types=(("application/dicom", "1.2.840.10008.1.2.5"),))
    assert rle.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    assert np.array_equal(rle.pixel_array, COMPRESSED.pixel_array)


def test_frames_of_a_compressed_instance_as_stored_and_decompressed(client):
    [stored] = client.retrieve_instance_frames(*WHERE, [1], media_types=(("application/octet-stream", "*"),))
    assert stored[:4] == b"\xff\x4f\xff\x51"  # a JPEG 2000 codestream (SOC, SIZ)
    [native] = client.retrieve_instance_frames(*WHERE, [1], media_types=(("application/octet-stream", EXPLICIT),))
    assert np.array_equal(np.frombuffer(native, dtype=COMPRESSED.pixel_array.dtype).reshape(COMPRESSED.pixel_array.shape),
                          COMPRESSED.pixel_array)


def test_delete_is_refused_and_deletes_nothing(client):
    with pytest.raises(requests.HTTPError):
        client.delete_instance(STUDY, SERIES, STORED[2].SOPInstanceUID)
    assert len(client.search_for_instances(STUDY, SERIES)) == 3
