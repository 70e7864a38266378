"""WADO-RS /rendered and /thumbnail: images a browser can show, decoded back with Pillow."""

import io

import numpy as np
import pydicom
import pytest
from PIL import Image

from tests.dicomgen import make_instance, uid
from tests.api.dicomweb.support import dataset, pydicom_file, store, variant


def stored(api, data):
    store(api, data)
    ds = dataset(data)
    return f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def image(response, media_type="image/jpeg"):
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == media_type
    return Image.open(io.BytesIO(response.content))


def pixels(response, media_type="image/png"):
    return np.asarray(image(response, media_type))


def ct(rows=64, columns=64, key="ct"):
    """A CT whose values span -1024..3071 HU, so windows clip it differently."""
    ramp = (np.arange(rows * columns, dtype=np.uint16) % 4096).reshape(rows, columns)
    return variant(make_instance(rows=rows, columns=columns), uid(key), PixelData=ramp.tobytes())


def test_rendered_instance_is_a_jpeg_of_the_image_size_and_not_blank(api):
    instance = stored(api, ct(rows=48, columns=64))
    picture = image(api.get(instance + "/rendered"))
    assert picture.format == "JPEG" and picture.size == (64, 48)
    low, high = picture.convert("L").getextrema()
    assert high - low > 100


def test_png_by_accept_header_or_query_parameter(api):
    instance = stored(api, ct())
    assert image(api.get(instance + "/rendered", HTTP_ACCEPT="image/png"), "image/png").format == "PNG"
    assert image(api.get(instance + "/rendered?accept=image/png"), "image/png").format == "PNG"
    assert api.get(instance + "/rendered", HTTP_ACCEPT="image/gif").status_code == 406


def test_the_window_changes_the_pixels(api):
    instance = stored(api, ct())
    soft = pixels(api.get(instance + "/rendered?accept=image/png&window=40,400,linear"))
    bone = pixels(api.get(instance + "/rendered?accept=image/png&window=500,2000,linear"))
    default = pixels(api.get(instance + "/rendered?accept=image/png"))
    assert not np.array_equal(soft, bone)
    # Without a window in the request, the file's own (40/400) applies.
    assert np.array_equal(default, soft)


def test_monochrome1_is_inverted(api):
    base = ct()
    normal = stored(api, base)
    inverted = stored(api, variant(base, uid("mono1"), PhotometricInterpretation="MONOCHROME1"))
    query = "/rendered?accept=image/png&window=1000,3000,linear"
    assert np.array_equal(pixels(api.get(inverted + query)), 255 - pixels(api.get(normal + query)))


def test_viewport_keeps_the_aspect_ratio(api):
    instance = stored(api, ct(rows=32, columns=64))
    assert image(api.get(instance + "/rendered?viewport=32,32")).size == (32, 16)
    assert image(api.get(instance + "/rendered?viewport=256,256")).size == (256, 128)


def test_thumbnail_is_small(api):
    instance = stored(api, ct(rows=256, columns=512))
    assert image(api.get(instance + "/thumbnail")).size == (128, 64)
    assert image(api.get(instance + "/thumbnail?viewport=64,64")).size == (64, 32)


def test_quality_changes_the_jpeg(api):
    instance = stored(api, ct())
    low = api.get(instance + "/rendered?quality=5").content
    high = api.get(instance + "/rendered?quality=95").content
    assert len(low) < len(high)


def test_frames_of_a_multiframe_render_separately(api):
    first = np.zeros((8, 8), dtype=np.uint16)
    second = np.full((8, 8), 4000, dtype=np.uint16)
    data = variant(make_instance(rows=8, columns=8), uid("two frames"), NumberOfFrames=2,
                   PixelData=first.tobytes() + second.tobytes())
    instance = stored(api, data)
    one = pixels(api.get(instance + "/frames/1/rendered?accept=image/png"))
    two = pixels(api.get(instance + "/frames/2/rendered?accept=image/png"))
    assert one.max() == 0 and two.min() == 255
    assert image(api.get(instance + "/frames/2/thumbnail")).size == (128, 128)
    assert api.get(instance + "/frames/3/rendered").status_code == 404
    assert api.get(instance + "/frames/1,2/rendered").status_code == 400


def test_study_and_series_render_their_first_instance(api):
    dark = np.zeros((16, 16), dtype=np.uint16).tobytes()
    bright = np.full((16, 16), 4000, dtype=np.uint16).tobytes()
    base = make_instance(rows=16, columns=16)
    # The second instance is stored first: "first" is by instance number, not arrival.
    stored(api, variant(base, uid("second"), InstanceNumber=2, PixelData=bright))
    first = stored(api, variant(base, uid("first"), InstanceNumber=1, PixelData=dark))
    ds = dataset(base)
    study = f"/dicom-web/studies/{ds.StudyInstanceUID}"
    expected = pixels(api.get(first + "/rendered?accept=image/png"))
    assert np.array_equal(pixels(api.get(study + "/rendered?accept=image/png")), expected)
    series = pixels(api.get(f"{study}/series/{ds.SeriesInstanceUID}/rendered?accept=image/png"))
    assert np.array_equal(series, expected) and expected.max() == 0
    assert image(api.get(f"{study}/series/{ds.SeriesInstanceUID}/thumbnail")).size == (128, 128)


def test_color_images_render_in_color(api):
    path = pydicom_file("SC_rgb_jpeg_dcmtk.dcm")
    ds = pydicom.dcmread(path)
    instance = stored(api, open(path, "rb").read())
    picture = image(api.get(instance + "/rendered?accept=image/png"), "image/png")
    assert picture.mode == "RGB" and picture.size == (ds.Columns, ds.Rows)
    red = np.asarray(picture)[5, 50]
    assert red[0] > 200 and red[1] < 50 and red[2] < 50  # the top band of this test image is red


def test_an_instance_without_an_image_is_406(api):
    instance = stored(api, open(pydicom_file("test-SR.dcm"), "rb").read())
    response = api.get(instance + "/rendered")
    assert response.status_code == 406
    assert "no image" in response.json()["Details"]


@pytest.mark.parametrize("query", ["window=40", "window=40,0,linear", "window=40,400,cubic", "viewport=0,10",
                                   "viewport=1,2,3,4,5,6", "quality=101", "annotation=patient"])
def test_invalid_rendering_parameters_are_400(api, query):
    instance = stored(api, ct())
    response = api.get(instance + "/rendered?" + query)
    assert response.status_code == 400, query
    assert response.json()["Details"]


def test_unknown_instance_is_404(api):
    assert api.get("/dicom-web/studies/1.2.3/series/4.5/instances/6.7/rendered").status_code == 404
