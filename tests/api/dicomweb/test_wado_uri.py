"""WADO-URI: /wado?requestType=WADO&studyUID=...&seriesUID=...&objectUID=..."""

import io

import numpy as np
import pytest
from PIL import Image

from tests.dicomgen import make_instance
from tests.api.dicomweb.support import dataset, store


@pytest.fixture
def instance(api):
    data = make_instance(rows=32, columns=64)
    store(api, data)
    ds = dataset(data)
    params = {"requestType": "WADO", "studyUID": ds.StudyInstanceUID, "seriesUID": ds.SeriesInstanceUID,
              "objectUID": ds.SOPInstanceUID}
    return data, params


def test_the_file_itself(api, instance):
    data, params = instance
    response = api.get("/wado", {**params, "contentType": "application/dicom"})
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    assert b"".join(response.streaming_content) == data


def test_jpeg_by_default_and_png_on_request(api, instance):
    _, params = instance
    jpeg = api.get("/wado", params)
    assert jpeg["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size == (64, 32)
    png = api.get("/wado", {**params, "contentType": "image/png"})
    assert Image.open(io.BytesIO(png.content)).format == "PNG"


def test_window_and_size_parameters(api, instance):
    _, params = instance
    png = {**params, "contentType": "image/png"}
    narrow = np.asarray(Image.open(io.BytesIO(api.get("/wado", {**png, "windowCenter": "0",
                                                                  "windowWidth": "10"}).content)))
    wide = np.asarray(Image.open(io.BytesIO(api.get("/wado", {**png, "windowCenter": "1000",
                                                                "windowWidth": "4000"}).content)))
    assert not np.array_equal(narrow, wide)
    smaller = api.get("/wado", {**params, "rows": "16"})
    assert Image.open(io.BytesIO(smaller.content)).size == (32, 16)


@pytest.mark.parametrize("change", [
    {"requestType": None},
    {"requestType": "WADO-RS"},
    {"objectUID": None},
    {"studyUID": "not-a-uid"},
    {"windowCenter": "40"},
    {"frameNumber": "0"},
    {"rows": "-3"},
])
def test_missing_or_invalid_parameters_are_400(api, instance, change):
    _, params = instance
    params = {k: v for k, v in {**params, **change}.items() if v is not None}
    response = api.get("/wado", params)
    assert response.status_code == 400
    assert response.json()["Details"]


def test_unknown_object_is_404(api, instance):
    _, params = instance
    assert api.get("/wado", {**params, "objectUID": "1.2.3.4"}).status_code == 404
    assert api.get("/wado", {**params, "seriesUID": "1.2.3.4"}).status_code == 404


def test_unsupported_content_type_is_406(api, instance):
    _, params = instance
    assert api.get("/wado", {**params, "contentType": "image/gif"}).status_code == 406
    assert api.get("/wado", {**params, "contentType": "application/dicom",
                             "transferSyntax": "1.2.840.10008.1.2.4.50"}).status_code == 406
