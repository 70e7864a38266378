"""The viewer's frames: stored values with what drawing them needs, once per frame (cacheable)."""

import base64
import gzip
import io
import json
import struct

import numpy as np
import pydicom

from archive import ingest
from tests.console.phantom import ct_series


def message(response):
    body = gzip.decompress(response.content) if response.get("Content-Encoding") == "gzip" else response.content
    (length,) = struct.unpack("<I", body[:4])
    header = json.loads(body[4:4 + length])
    return header, body[4 + length:]


def test_a_frame_comes_with_its_attributes_and_cache_headers(admin):
    data = ct_series("pix", 1, size=64)[0]
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PixelSpacing = [0.5, 0.25]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.WindowCenter, ds.WindowWidth = [40, 300], [400, 1500]
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    buffer = io.BytesIO()
    ds.save_as(buffer)
    stored = ingest.store(buffer.getvalue(), ingest.Origin.http("127.0.0.1", "admin"))
    url = f"/ui/instances/{stored.instance_id}/frames/0/pixels"
    response = admin.get(url, HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200 and response["Cache-Control"] == "private, max-age=86400"
    header, values = message(response)
    assert (header["rows"], header["columns"], header["dtype"], header["samples"]) == (64, 64, "uint16", 1)
    assert header["pixel_spacing"] == [0.5, 0.25] and header["orientation"] == [1, 0, 0, 0, 1, 0]
    assert [(w["center"], w["width"]) for w in header["windows"]] == [(40, 400), (300, 1500)]
    assert (header["slope"], header["intercept"]) == (1, -1024)
    assert np.array_equal(np.frombuffer(values, "<u2").reshape(64, 64), ds.pixel_array)
    again = admin.get(url, HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304 and not again.content
    assert admin.get(f"/ui/instances/{stored.instance_id}/frames/3/pixels").status_code == 404


def test_overlay_planes_travel_with_the_frame(admin):
    ds = pydicom.dcmread(io.BytesIO(ct_series("ovl", 1, size=16)[0]))
    bits = np.zeros((8, 8), dtype=np.uint8)
    bits[2, 3] = 1
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [5, 4])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", np.packbits(bits.ravel(), bitorder="little").tobytes())
    buffer = io.BytesIO()
    ds.save_as(buffer)
    stored = ingest.store(buffer.getvalue(), ingest.Origin.http("127.0.0.1", "admin"))
    header, _ = message(admin.get(f"/ui/instances/{stored.instance_id}/frames/0/pixels"))
    (overlay,) = header["overlays"]
    assert (overlay["rows"], overlay["columns"], overlay["origin"]) == (8, 8, [5, 4])
    unpacked = np.unpackbits(np.frombuffer(base64.b64decode(overlay["bits"]), np.uint8))[:64]
    assert unpacked.reshape(8, 8)[2, 3] == 1 and unpacked.sum() == 1


def test_a_compressed_frame_is_decoded_by_the_server(admin):
    from tests.dicomgen import pydicom_test_files

    (path,) = [p for p in pydicom_test_files() if p.endswith("MR_small_jpeg_ls_lossless.dcm")]
    with open(path, "rb") as source:
        stored = ingest.store(source.read(), ingest.Origin.http("127.0.0.1", "admin"))
    header, values = message(admin.get(f"/ui/instances/{stored.instance_id}/frames/0/pixels"))
    assert (header["dtype"], header["rows"], header["columns"]) == ("int16", 64, 64)
    assert np.array_equal(np.frombuffer(values, "<i2").reshape(64, 64), pydicom.dcmread(path).pixel_array)
