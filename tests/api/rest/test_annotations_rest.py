"""Metadata and attachments with revisions; instance tags."""

import pytest

from tests.dicomgen import make_instance


@pytest.fixture
def instance(api):
    response = api.generic("POST", "/instances", make_instance(patient_name="DOE^JOHN"), content_type="application/dicom")
    return response.json()


def test_system_metadata_of_an_instance(api, instance):
    values = api.get(f"/instances/{instance['ID']}/metadata?expand").json()
    assert values["Origin"] == "RestApi"
    assert values["TransferSyntax"] == "1.2.840.10008.1.2.1"
    assert values["IndexInSeries"] == "1"
    assert len(values["ReceptionDate"]) == 15
    # As Orthanc: an upload over HTTP has an empty RemoteAET, and the Pixel Data
    # element's place in the file is given (viewers read frames from it).
    assert values["RemoteAET"] == ""
    assert values["HttpUsername"] == "admin"
    offset = int(values["PixelDataOffset"])
    assert b"".join(api.get(f"/instances/{instance['ID']}/file").streaming_content)[offset:offset + 4] == b"\xe0\x7f\x10\x00"
    study = api.get(f"/studies/{instance['ParentStudy']}/metadata?expand").json()
    assert study == {"LastUpdate": api.get(f"/studies/{instance['ParentStudy']}").json()["LastUpdate"]}
    series = api.get(f"/series/{instance['ParentSeries']}/metadata?expand").json()
    assert set(series) == {"LastUpdate", "RemoteAET"} and series["RemoteAET"] == ""
    response = api.put(f"/instances/{instance['ID']}/metadata/Origin", "x", content_type="text/plain")
    assert response.status_code == 403


def test_metadata_revisions_with_if_match(api, instance):
    url = f"/studies/{instance['ParentStudy']}/metadata/Comment"
    first = api.put(url, "first", content_type="text/plain")
    assert first.status_code == 200 and first["ETag"] == '"1"'
    read = api.get(url)
    assert (read.content, read["ETag"]) == (b"first", '"1"')
    second = api.put(url, "second", content_type="text/plain", HTTP_IF_MATCH='"1"')
    assert second["ETag"] == '"2"'
    stale = api.put(url, "lost", content_type="text/plain", HTTP_IF_MATCH='"1"')
    assert stale.status_code == 409
    assert api.get(url).content == b"second"
    assert api.delete(url, HTTP_IF_MATCH='"1"').status_code == 409
    assert api.delete(url, HTTP_IF_MATCH='"2"').status_code == 200
    assert api.get(url).status_code == 404
    assert api.put(url, "x", content_type="text/plain", HTTP_IF_MATCH="abc").status_code == 400
    assert api.put(f"/studies/{instance['ParentStudy']}/metadata/bad name", "x", content_type="text/plain").status_code in (400, 404)


def test_attachments_store_bytes_with_revisions(api, instance, storage_dir):
    url = f"/series/{instance['ParentSeries']}/attachments/report"
    assert api.put(url, b"\x00\x01binary", content_type="application/octet-stream")["ETag"] == '"1"'
    data = api.get(url + "/data")
    assert b"".join(data.streaming_content) == b"\x00\x01binary"
    assert api.get(url + "/size").content == b"8"
    assert api.put(url, b"v2", content_type="application/octet-stream", HTTP_IF_MATCH='"1"')["ETag"] == '"2"'
    assert api.put(url, b"v3", content_type="application/octet-stream", HTTP_IF_MATCH='"1"').status_code == 409
    assert b"".join(api.get(url + "/data").streaming_content) == b"v2"
    assert api.get(f"/series/{instance['ParentSeries']}/attachments").json() == ["report"]
    files = lambda: sorted(p for p in storage_dir.rglob("*") if p.is_file() and p.parent.name != "tmp")
    assert len(files()) == 2  # the DICOM file and the current attachment, not the replaced one
    assert api.delete(url).status_code == 200
    assert len(files()) == 1
    assert api.put(f"/instances/{instance['ID']}/attachments/dicom", b"x", content_type="application/octet-stream").status_code == 403


def test_annotations_of_unknown_resource_are_404(api, db):
    assert api.get("/studies/nope/metadata").status_code == 404
    assert api.put("/studies/nope/metadata/Comment", "x", content_type="text/plain").status_code == 404


def test_tags_full_simplified_and_short(api, instance):
    full = api.get(f"/instances/{instance['ID']}/tags").json()
    assert full["0010,0010"] == {"Name": "PatientName", "Type": "String", "Value": "DOE^JOHN"}
    assert full["7fe0,0010"]["Value"] is None
    assert api.get(f"/instances/{instance['ID']}/simplified-tags").json()["PatientName"] == "DOE^JOHN"
    assert api.get(f"/instances/{instance['ID']}/tags?simplify").json()["Modality"] == "CT"
    assert api.get(f"/instances/{instance['ID']}/tags?short").json()["0008,0060"] == "CT"


def test_tags_of_sequences_tag_values_floats_and_private_elements_as_orthanc(api, db, storage_dir):
    import io

    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    dataset = pydicom.dcmread(io.BytesIO(make_instance(ReferencedImageSequence=Sequence([item]))))
    dataset.FrameIncrementPointer = [0x00181063, 0x00181065]
    dataset.ReferencePixelPhysicalValueX = 0.0
    dataset.add_new(0x00186030, "FD", 9.699999809265137)
    dataset.private_block(0x0009, "PACSWEB_TEST", create=True).add_new(0x01, "LO", "private value")
    out = io.BytesIO()
    dataset.save_as(out)
    instance_id = api.generic("POST", "/instances", out.getvalue(), content_type="application/dicom").json()["ID"]
    short = api.get(f"/instances/{instance_id}/tags?short").json()
    assert short["0008,1140"] == [{"0008,1155": "1.2.3.4"}]
    assert short["0028,0009"] == "0018,1063\\0018,1065"
    assert (short["0018,6028"], short["0018,6030"]) == ("0", "9.6999998092651367")
    full = api.get(f"/instances/{instance_id}/tags").json()
    assert full["0009,1001"] == {"Name": "Unknown Tag & Data", "PrivateCreator": "PACSWEB_TEST", "Type": "String",
                                 "Value": "private value"}
    assert full["0009,0010"] == {"Name": "PrivateCreator", "Type": "String", "Value": "PACSWEB_TEST"}


def test_content_walks_elements_and_sequences(api, db, storage_dir):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    data = make_instance(patient_name="CONTENT^TEST", ReferencedImageSequence=Sequence([item]))
    instance_id = api.generic("POST", "/instances", data, content_type="application/dicom").json()["ID"]
    base = f"/instances/{instance_id}/content"
    assert "0010-0010" in api.get(base).json()
    assert api.get(base + "/0010-0010").content == b"CONTENT^TEST"
    assert api.get(base + "/0008-1140").json() == ["0"]
    # As written in the file, the padding of an odd-length UID included (as Orthanc).
    assert api.get(base + "/0008-1140/0/0008-1155").content == b"1.2.3.4\0"
    assert api.get(base + "/0008-1140/5").status_code == 404
    assert api.get(base + "/zzzz").status_code == 404
    assert api.get(f"/instances/{instance_id}/frames").json() == [0]


def test_preview_and_rendered_images(api, instance):
    import io

    from PIL import Image

    preview = api.get(f"/instances/{instance['ID']}/preview")
    assert preview.status_code == 200 and preview["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(preview.content))
    assert image.size == (64, 64)
    assert len(set(image.getdata())) > 1  # not blank
    narrow = api.get(f"/instances/{instance['ID']}/rendered?window-center=1000&window-width=10")
    wide = api.get(f"/instances/{instance['ID']}/rendered?window-center=1000&window-width=4000")
    assert narrow.content != wide.content  # the window is applied
    small = api.get(f"/instances/{instance['ID']}/frames/0/rendered?width=32", HTTP_ACCEPT="image/jpeg")
    assert small["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(small.content)).size == (32, 32)
    assert api.get(f"/instances/{instance['ID']}/frames/3/preview").status_code == 404
    assert api.get(f"/instances/{instance['ID']}/rendered?quality=abc").status_code == 400
    # Renderings are cacheable for the user; a revalidation is answered without rendering.
    assert (narrow["Cache-Control"], narrow["ETag"] != wide["ETag"]) == ("private, max-age=3600", True)
    again = api.get(f"/instances/{instance['ID']}/rendered?window-center=1000&window-width=10",
                    HTTP_IF_NONE_MATCH=narrow["ETag"])
    assert again.status_code == 304 and again["ETag"] == narrow["ETag"] and not again.content


def test_attachment_info_and_parts_as_orthanc(api, instance):
    base = f"/instances/{instance['ID']}/attachments/dicom"
    size = len(b"".join(api.get(f"/instances/{instance['ID']}/file").streaming_content))
    md5 = api.get(f"{base}/md5").content.decode()
    info = api.get(f"{base}/info").json()
    assert info == {"CompressedMD5": md5, "CompressedSize": size, "ContentType": 1, "UncompressedMD5": md5,
                    "UncompressedSize": size, "Uuid": info["Uuid"], "Revision": 1}
    assert api.get(f"{base}/compressed-md5").content.decode() == md5 and len(md5) == 32
    assert api.get(f"{base}/data")["Content-Type"] == "application/dicom"
    assert api.get(f"{base}/compressed-data")["Content-Type"] == "application/octet-stream"
    assert api.get(f"{base}/uncompressed-size").status_code == 404
    assert set(api.get(base).json()) == {"compressed-data", "compressed-md5", "compressed-size", "data", "info",
                                         "is-compressed", "md5", "size"}
    put = api.put(f"/instances/{instance['ID']}/attachments/1030", b"bytes", content_type="application/octet-stream")
    assert put.status_code == 200
    assert api.get(f"/instances/{instance['ID']}/attachments/1030/info").json()["ContentType"] == 1030


def test_verify_md5_finds_an_altered_file_and_compress_is_refused(api, instance, storage_dir):
    url = f"/series/{instance['ParentSeries']}/attachments/report"
    api.put(url, b"report bytes", content_type="application/octet-stream")
    assert api.post(url + "/verify-md5").json() == {}
    assert api.post(url + "/uncompress").json() == {}
    refused = api.post(url + "/compress")
    assert refused.status_code == 400 and "never compresses" in refused.json()["Details"]
    assert api.get(url + "/is-compressed").content == b"0"
    stored = [p for p in storage_dir.rglob("*") if p.is_file() and p.parent.name != "tmp" and p.read_bytes() == b"report bytes"]
    stored[0].write_bytes(b"report bytez")
    altered = api.post(url + "/verify-md5")
    assert altered.status_code == 400 and altered.json()["OrthancError"] == "Bad file format"
    stored[0].unlink()
    assert api.post(url + "/verify-md5").status_code == 400
    assert api.post(f"/series/{instance['ParentSeries']}/attachments/nonexistent/verify-md5").status_code == 404
