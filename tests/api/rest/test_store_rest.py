"""POST /instances, GET /instances/{id}/file, /system, /statistics through HTTP."""

import gzip
import hashlib
import io
import zipfile
import zlib

import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MediaStorageDirectoryStorage

from archive.identifiers import instance_public_id, patient_public_id, series_public_id, study_public_id
from tests.storing import post_instance, zip_of
from tests.dicomgen import make_instance, uid


def test_store_answers_orthanc_shape_with_orthanc_ids(api):
    study_uid, series_uid, sop_uid = uid("s"), uid("se"), uid("i")
    response = post_instance(api, make_instance(patient_id="P-42", study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid))
    assert response.status_code == 200
    answer = response.json()
    instance_id = instance_public_id("P-42", study_uid, series_uid, sop_uid)
    assert answer == {
        "ID": instance_id,
        "ParentPatient": patient_public_id("P-42"),
        "ParentStudy": study_public_id("P-42", study_uid),
        "ParentSeries": series_public_id("P-42", study_uid, series_uid),
        "Path": f"/instances/{instance_id}",
        "Status": "Success",
    }


def test_public_id_is_sha1_in_five_groups_as_in_orthanc():
    # The Orthanc Book, "Orthanc identifiers": SHA-1 of "PatientID|StudyUID|...".
    expected = hashlib.sha1(b"P|1.2|1.2.3|1.2.3.4").hexdigest()
    assert instance_public_id("P", "1.2", "1.2.3", "1.2.3.4") == "-".join(
        expected[i : i + 8] for i in range(0, 40, 8)
    )


def test_second_store_of_same_file_is_already_stored_and_changes_nothing(api):
    data = make_instance()
    first = post_instance(api, data).json()
    stats_before = api.get("/statistics").json()
    second = post_instance(api, data)
    assert second.status_code == 200
    assert second.json() == {**first, "Status": "AlreadyStored"}
    assert api.get("/statistics").json() == stats_before


def test_stored_file_is_streamed_back_unchanged(api):
    data = make_instance(rows=256, columns=256)
    instance_id = post_instance(api, data).json()["ID"]
    response = api.get(f"/instances/{instance_id}/file")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom"
    assert response.streaming
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert int(response["Content-Length"]) == len(data)


def test_file_of_unknown_instance_is_404(api):
    response = api.get("/instances/00000000-00000000-00000000-00000000-00000000/file")
    assert response.status_code == 404
    assert response.json()["HttpStatus"] == 404


def test_zip_of_dicom_files_stores_each_member(api):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(3):
            archive.writestr(f"dir/{n}.dcm", make_instance(instance_number=n + 1))
        archive.writestr("emptydir/", b"")
    response = api.generic("POST", "/instances", buffer.getvalue(), content_type="application/zip")
    assert response.status_code == 200
    answers = response.json()
    assert [a["Status"] for a in answers] == ["Success"] * 3
    assert api.get("/statistics").json()["CountInstances"] == 3


def test_statistics_counts_resources_and_bytes(api):
    sizes = 0
    for patient in ("A", "B"):
        for n in range(2):
            data = make_instance(patient_id=patient, instance_number=n + 1)
            sizes += len(data)
            assert post_instance(api, data).status_code == 200
    stats = api.get("/statistics").json()
    assert stats["CountPatients"] == 2
    assert stats["CountStudies"] == 2
    assert stats["CountSeries"] == 2
    assert stats["CountInstances"] == 4
    assert stats["TotalDiskSize"] == str(sizes)
    assert stats["TotalDiskSizeMB"] == sizes // 2**20


def test_system_reports_node_and_dicom_identity(api, settings):
    settings.AE_TITLE = "MYPACS"
    system = api.get("/system").json()
    assert system["DicomAet"] == "MYPACS"
    assert system["ApiVersion"] >= 16
    # The Orthanc API level for clients that gate on it; pacsweb's own version apart.
    assert system["Version"] == "1.12.1" and system["ApiVersion"] == 21
    assert system["PacswebVersion"] == settings.VERSION
    assert system["MaximumStorageSize"] == 0 and system["MaximumPatientCount"] == 0
    assert system["StorageAreaPlugin"] is None and system["IsHttpServerSecure"] is True
    assert system["MainDicomTags"]["Patient"].startswith("0010,0010")
    assert {"Version", "Name", "DicomPort", "HttpPort", "DatabaseVersion"} <= set(system)


def test_main_dicom_tags_and_normalized_columns_are_indexed(api, django_assert_max_num_queries):
    from archive.models import Instance, Patient, Series, Study

    post_instance(api, make_instance(patient_name="Müller^Anna", accession_number=" acc-9 ", modality="mr"))
    patient = Patient.objects.get()
    assert patient.main_dicom_tags["PatientName"] == "Müller^Anna"
    assert patient.patient_name_norm == "MULLER^ANNA"
    study = Study.objects.get()
    assert study.accession_number_norm == "ACC-9"
    assert study.main_dicom_tags["StudyDescription"] == "CT CHEST"
    assert Series.objects.get().modality == "MR"
    instance = Instance.objects.get()
    assert instance.main_dicom_tags["InstanceNumber"] == "1"
    assert instance.origin == "RestApi"


def test_changes_are_logged_once_per_new_resource(api):
    from archive.models import Change

    post_instance(api, make_instance(instance_number=1))
    post_instance(api, make_instance(instance_number=2))
    post_instance(api, make_instance(instance_number=2))
    kinds = sorted(Change.objects.values_list("change_type", flat=True))
    assert kinds == ["NewInstance", "NewInstance", "NewPatient", "NewSeries", "NewStudy"]


def test_real_world_files_from_pydicom_are_stored_or_refused_with_reason(api):
    """Every Part 10 file pydicom ships either stores, or gets a 4xx naming why."""
    from tests.dicomgen import pydicom_test_files

    stored = refused = 0
    for path in pydicom_test_files():
        with open(path, "rb") as f:
            response = post_instance(api, f.read())
        assert response.status_code in (200, 400, 409), (path, response.status_code)
        if response.status_code == 200:
            stored += 1
            assert response.json()["Status"] in ("Success", "AlreadyStored")
        else:
            refused += 1
            assert response.json()["Details"], path
    assert stored > 50
    assert refused > 0


def bare_data_set(part10, implicit):
    """The data set of a Part 10 file written again without preamble and meta, as
    pydicom writes it when asked (write_like_original) and Orthanc accepts it."""
    dataset = pydicom.dcmread(io.BytesIO(part10))
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
    write_dataset(buffer, dataset)
    return buffer.getvalue()


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit-vr", "explicit-vr"])
def test_bare_data_set_is_stored_as_part10_with_its_bytes_unchanged(api, implicit):
    raw = bare_data_set(make_instance(patient_id="RAW"), implicit)
    answer = post_instance(api, raw)
    assert answer.status_code == 200, answer.content
    stored = b"".join(api.get(f"/instances/{answer.json()['ID']}/file").streaming_content)
    assert stored[128:132] == b"DICM" and stored.endswith(raw)
    dataset = pydicom.dcmread(io.BytesIO(stored))
    assert dataset.file_meta.TransferSyntaxUID == (ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian)
    assert dataset.file_meta.MediaStorageSOPInstanceUID == dataset.SOPInstanceUID
    assert dataset.PatientID == "RAW"


def test_file_without_preamble_but_with_meta_is_stored(api):
    data = make_instance(patient_id="NOPRE")
    answer = post_instance(api, data[132:])
    assert answer.status_code == 200, answer.content
    assert b"".join(api.get(f"/instances/{answer.json()['ID']}/file").streaming_content) == data


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_content_encoded_upload_is_decoded_and_stored(api, coding):
    data = make_instance(patient_id="GZ")
    body = gzip.compress(data) if coding == "gzip" else zlib.compress(data)
    answer = api.generic("POST", "/instances", body, content_type="application/dicom", HTTP_CONTENT_ENCODING=coding)
    assert answer.status_code == 200, answer.content
    assert b"".join(api.get(f"/instances/{answer.json()['ID']}/file").streaming_content) == data


def test_broken_or_unknown_content_encoding_is_refused(api):
    broken = api.generic("POST", "/instances", gzip.compress(make_instance())[:-20], content_type="application/dicom",
                         HTTP_CONTENT_ENCODING="gzip")
    assert broken.status_code == 400 and "gzip" in broken.json()["Details"]
    unknown = api.generic("POST", "/instances", make_instance(), content_type="application/dicom",
                          HTTP_CONTENT_ENCODING="br")
    assert unknown.status_code == 415
    assert api.get("/statistics").json()["CountInstances"] == 0


def test_gzip_bomb_is_refused_past_the_upload_limit(api, settings):
    settings.MAX_UPLOAD_BYTES = 100_000
    response = api.generic("POST", "/instances", gzip.compress(b"\0" * 10_000_000), content_type="application/dicom",
                           HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413


def test_browser_form_with_files_and_a_zip_stores_them_all(api):
    files = [make_instance(patient_id="FORM", instance_number=n) for n in (1, 2, 3)]
    form = {"files": [SimpleUploadedFile("a.dcm", files[0]), SimpleUploadedFile("b.zip", zip_of(files[1:]))]}
    response = api.post("/instances", form)
    assert response.status_code == 200, response.content
    assert [a["Status"] for a in response.json()] == ["Success"] * 3
    assert api.get("/statistics").json()["CountInstances"] == 3


def test_zip_members_that_are_no_instance_are_skipped_as_orthanc_does(api):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", b"a media of one study\n")
        archive.writestr("DICOMDIR", dicomdir_bytes())
        archive.writestr("IMAGES/IM1", make_instance(patient_id="MEDIA"))
    response = post_instance(api, buffer.getvalue(), content_type="application/zip")
    assert response.status_code == 200, response.content
    assert [a["Status"] for a in response.json()] == ["Success"]
    assert api.get("/statistics").json()["CountInstances"] == 1


def dicomdir_bytes():
    """A DICOMDIR (PS3.10 §8.6): the index of a media, a Part 10 file that is no instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = uid("dicomdir")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.FileSetID = "MEDIA"
    dataset.DirectoryRecordSequence = []
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
