"""A real server driven by the dicomweb-client library, as viewers and scripts use it."""

import io

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from PIL import Image

from tests import servers
from tests.dicomgen import make_instance, uid

# 512 x 512 16-bit: three of them make a body past dicomweb-client's 1 MB
# chunk size, so the store goes out with chunked transfer encoding.
ROWS = COLUMNS = 512


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module: starting one costs seconds."""
    node = servers.Server(tmp_path_factory.mktemp("dicomweb-node"))
    yield node
    node.stop()


@pytest.fixture
def client(server):
    session = requests.Session()
    session.auth = ("admin", servers.ADMIN_PASSWORD)
    with session:
        if session.get(server.url + "/dicom-web/studies").status_code == 404:
            pytest.skip("pacsweb/urls.py does not route /dicom-web/ yet: add "
                        'path("dicom-web/", include("api.dicomweb.urls")) and path("wado", wado_uri)')
        yield DICOMwebClient(server.url + "/dicom-web", session=session)


def instances(key, count):
    study_uid, series_uid = uid(key, "study"), uid(key, "series")
    return [pydicom.dcmread(io.BytesIO(make_instance(
        patient_id=key, study_uid=study_uid, series_uid=series_uid, instance_number=n + 1, rows=ROWS,
        columns=COLUMNS))) for n in range(count)]


def uids(datasets):
    return sorted(ds.SOPInstanceUID for ds in datasets)


def test_store_search_and_retrieve(client):
    stored = instances("CLIENT-1", 3)
    study_uid, series_uid = stored[0].StudyInstanceUID, stored[0].SeriesInstanceUID
    answer = client.store_instances(stored)
    assert sorted(item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence) == uids(stored)

    [study] = client.search_for_studies(search_filters={"PatientID": "CLIENT-1"})
    assert pydicom.Dataset.from_json(study).NumberOfStudyRelatedInstances == 3
    [series] = client.search_for_series(study_uid)
    assert pydicom.Dataset.from_json(series).SeriesInstanceUID == series_uid
    found = client.search_for_instances(study_uid, series_uid)
    assert uids(pydicom.Dataset.from_json(item) for item in found) == uids(stored)

    retrieved = client.retrieve_study(study_uid)
    assert uids(retrieved) == uids(stored)
    by_uid = {ds.SOPInstanceUID: ds for ds in stored}
    assert all(ds.PixelData == by_uid[ds.SOPInstanceUID].PixelData for ds in retrieved)
    assert uids(client.retrieve_series(study_uid, series_uid)) == uids(stored)
    one = client.retrieve_instance(study_uid, series_uid, stored[1].SOPInstanceUID)
    assert one.PixelData == stored[1].PixelData and one.PatientName == "DOE^JANE"


def test_metadata_frames_and_rendered(client):
    [stored] = instances("CLIENT-2", 1)
    client.store_instances([stored])
    where = (stored.StudyInstanceUID, stored.SeriesInstanceUID, stored.SOPInstanceUID)

    metadata = client.retrieve_instance_metadata(*where)
    assert "BulkDataURI" in metadata["7FE00010"]
    metadata.pop("7FE00010")
    dataset = pydicom.Dataset.from_json(metadata)
    assert dataset.Rows == ROWS and dataset.PatientID == "CLIENT-2" and dataset.InstanceNumber == 1

    [frame] = client.retrieve_instance_frames(*where, frame_numbers=[1])
    assert frame == stored.PixelData

    png = client.retrieve_instance_rendered(*where, media_types=("image/png",))
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG" and picture.size == (COLUMNS, ROWS)
    assert np.asarray(picture).std() > 0
