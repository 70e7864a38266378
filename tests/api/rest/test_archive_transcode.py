"""ZIP archives and media with Orthanc's `transcode` option: every file written in the syntax asked."""

import io
import zipfile

import numpy as np
import pydicom

from tests.dicomgen import pydicom_test_files
from tests.storing import store_instance

EXPLICIT = "1.2.840.10008.1.2.1"


def stored(api, name):
    path = next(p for p in pydicom_test_files() if p.endswith("/" + name))
    answer = store_instance(api, open(path, "rb").read())
    return answer["ParentStudy"], pydicom.dcmread(path)


def members(response):
    body = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_a_study_archive_with_transcode_holds_every_file_decompressed(api):
    study, original = stored(api, "MR_small_jp2klossless.dcm")

    response = api.get(f"/studies/{study}/archive", {"transcode": EXPLICIT})

    assert response.status_code == 200
    [data] = members(response).values()
    received = pydicom.dcmread(io.BytesIO(data))
    assert received.file_meta.TransferSyntaxUID == EXPLICIT
    assert np.array_equal(received.pixel_array, original.pixel_array)


def test_create_archive_takes_transcode_in_its_body_and_compresses_too(api):
    study, original = stored(api, "CT_small.dcm")

    response = api.post("/tools/create-archive", {"Resources": [study], "Transcode": "1.2.840.10008.1.2.5"},
                        content_type="application/json")

    [data] = members(response).values()
    received = pydicom.dcmread(io.BytesIO(data))
    assert received.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    assert np.array_equal(received.pixel_array, original.pixel_array)


def test_media_with_transcode_names_the_new_syntax_in_its_dicomdir(api):
    study, _ = stored(api, "MR_small_RLE.dcm")

    files = members(api.get(f"/studies/{study}/media", {"transcode": EXPLICIT}))

    dicomdir = pydicom.dcmread(io.BytesIO(files["DICOMDIR"]))
    [image] = [r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    assert image.ReferencedTransferSyntaxUIDInFile == EXPLICIT
    assert pydicom.dcmread(io.BytesIO(files["IMAGES/IM0"])).file_meta.TransferSyntaxUID == EXPLICIT


def test_a_syntax_pacsweb_does_not_write_is_400(api):
    study, _ = stored(api, "CT_small.dcm")
    response = api.get(f"/studies/{study}/archive", {"transcode": "1.2.840.10008.1.2.4.50"})
    assert response.status_code == 400
    assert "1.2.840.10008.1.2.4.50" in response.json()["Details"]
