"""Orthanc's routes that read the files below a resource: /instances-tags,
/shared-tags, /module, /header, /ordered-slices, /pdf, /image-uint8|16, /numpy,
and the protection flag of a patient."""

import gzip
import io

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian

from tests.dicomgen import make_instance, uid
from tests.storing import store_instance


def store_series(api, count=3, **kwargs):
    """Instances stored in an order that is not their slices' order."""
    study_uid = uid("files", kwargs.get("patient_id", "FILES"))
    answers = [store_instance(api, make_instance(study_uid=study_uid, instance_number=n, **kwargs))
               for n in reversed(range(1, count + 1))]
    return answers


def test_instances_tags_and_shared_tags_of_a_series(api):
    answers = store_series(api, patient_id="SHARED")
    series = answers[0]["ParentSeries"]
    every = api.get(f"/series/{series}/instances-tags?simplify").json()
    assert set(every) == {a["ID"] for a in answers}
    assert {tags["InstanceNumber"] for tags in every.values()} == {"1", "2", "3"}
    shared = api.get(f"/series/{series}/shared-tags").json()
    assert shared["0010,0020"] == {"Name": "PatientID", "Type": "String", "Value": "SHARED"}
    assert "0020,0013" not in shared  # InstanceNumber differs
    assert "7fe0,0010" not in shared
    assert api.get(f"/studies/{answers[0]['ParentStudy']}/shared-tags?short").json()["0008,0060"] == "CT"
    assert api.get(f"/instances/{answers[0]['ID']}/shared-tags").status_code == 404
    assert api.get("/series/nope/instances-tags").status_code == 404


def test_module_gives_the_tags_of_the_resource_level(api):
    stored = store_instance(api, make_instance(patient_id="MOD", patient_name="MOD^ULE"))
    assert api.get(f"/patients/{stored['ParentPatient']}/module?simplify").json() == {
        "PatientBirthDate": "19800101", "PatientID": "MOD", "PatientName": "MOD^ULE", "PatientSex": "F"}
    assert api.get(f"/studies/{stored['ParentStudy']}/module-patient?short").json()["0010,0020"] == "MOD"
    study = api.get(f"/studies/{stored['ParentStudy']}/module?simplify").json()
    # The General Study module (PS3.3 C.7.2.1), as Orthanc shows it: no institution, no patient.
    assert study["AccessionNumber"] == "ACC0001" and "PatientID" not in study and "InstitutionName" not in study
    series = api.get(f"/series/{stored['ParentSeries']}/module").json()
    assert series["0008,0060"]["Value"] == "CT"
    assert set(api.get(f"/instances/{stored['ID']}/module?simplify").json()) == {
        "InstanceNumber", "SOPClassUID", "SOPInstanceUID", "SpecificCharacterSet"}


def test_header_is_the_file_meta_information(api):
    data = make_instance(patient_id="HDR")
    stored = store_instance(api, data)
    header = api.get(f"/instances/{stored['ID']}/header?simplify").json()
    meta = pydicom.dcmread(io.BytesIO(data)).file_meta
    assert header["TransferSyntaxUID"] == ExplicitVRLittleEndian
    assert header["MediaStorageSOPInstanceUID"] == meta.MediaStorageSOPInstanceUID
    assert all(tag.startswith("0002,") for tag in api.get(f"/instances/{stored['ID']}/header").json())
    assert "FileMetaInformationVersion" not in header  # binary: left out, as Orthanc does


def test_ordered_slices_follow_the_positions(api):
    answers = store_series(api, patient_id="SLICES")
    ordered = api.get(f"/series/{answers[0]['ParentSeries']}/ordered-slices").json()
    by_number = [a["ID"] for a in reversed(answers)]  # stored 3, 2, 1: slices are 1, 2, 3
    assert ordered["Type"] == "Volume"
    assert ordered["Dicom"] == [f"/instances/{i}/file" for i in by_number]
    assert ordered["Slices"] == [f"/instances/{i}/frames/0" for i in by_number]
    assert ordered["SlicesShort"] == [[i, 0, 1] for i in by_number]


def test_protection_flag_of_a_patient_is_kept(api):
    patient = store_instance(api, make_instance(patient_id="PROT"))["ParentPatient"]
    assert api.get(f"/patients/{patient}/protected").content == b"0"
    assert api.put(f"/patients/{patient}/protected", "1", content_type="text/plain").status_code == 200
    assert api.get(f"/patients/{patient}/protected").content == b"1"
    assert api.put(f"/patients/{patient}/protected", "yes", content_type="text/plain").status_code == 400
    assert api.put(f"/patients/{patient}/protected", "0", content_type="text/plain").status_code == 200
    assert api.get(f"/patients/{patient}/protected").content == b"0"
    assert api.get("/patients/nope/protected").status_code == 404


def test_raw_images_are_the_stored_values_clipped(api):
    data = make_instance(patient_id="RAWIMG")
    stored = store_instance(api, data)
    values = pydicom.dcmread(io.BytesIO(data)).pixel_array
    uint16 = np.array(Image.open(io.BytesIO(api.get(f"/instances/{stored['ID']}/image-uint16").content)))
    assert (uint16 == values).all()
    uint8 = np.array(Image.open(io.BytesIO(api.get(f"/instances/{stored['ID']}/frames/0/image-uint8").content)))
    assert uint8.dtype == np.uint8 and (uint8 == np.clip(values, 0, 255)).all()
    int16 = np.array(Image.open(io.BytesIO(api.get(f"/instances/{stored['ID']}/image-int16").content)))
    assert (int16 == np.clip(values, 0, 32767)).all()
    assert api.get(f"/instances/{stored['ID']}/frames/1/image-uint8").status_code == 404


def test_numpy_arrays_are_rescaled_unless_asked(api):
    data = make_instance(patient_id="NUMPY")
    stored = store_instance(api, data)
    values = pydicom.dcmread(io.BytesIO(data)).pixel_array
    whole = np.load(io.BytesIO(api.get(f"/instances/{stored['ID']}/numpy").content))
    assert whole.shape == (1, 64, 64, 1) and whole.dtype == np.float32
    assert (whole[0, :, :, 0] == values.astype(np.float32) - 1024).all()  # RescaleIntercept -1024
    frame = np.load(io.BytesIO(api.get(f"/instances/{stored['ID']}/frames/0/numpy?rescale=false").content))
    assert frame.shape == (64, 64, 1) and (frame[:, :, 0] == values).all()
    packed = np.load(io.BytesIO(api.get(f"/instances/{stored['ID']}/numpy?compress=true").content))
    assert (packed["arr_0"] == whole).all()


def test_numpy_of_a_series_stacks_its_slices_in_the_order_of_ordered_slices(api):
    # Stored out of order: the array follows the slices' positions, not the uploads.
    values = {}
    for number in (3, 1, 2):
        data = make_instance(patient_id="NUMPY-SERIES", instance_number=number)
        stored = store_instance(api, data)
        series = stored["ParentSeries"]
        values[stored["ID"]] = pydicom.dcmread(io.BytesIO(data)).pixel_array
    volume = np.load(io.BytesIO(api.get(f"/series/{series}/numpy?rescale=false").content))
    assert volume.shape == (3, 64, 64, 1)
    order = [instance_id for instance_id, _, _ in api.get(f"/series/{series}/ordered-slices").json()["SlicesShort"]]
    assert sorted(order) == sorted(values)
    assert all((volume[i, :, :, 0] == values[instance_id]).all() for i, instance_id in enumerate(order))
    assert api.get("/series/nonexistent/numpy").status_code == 404


def test_raw_frames_are_the_stored_bytes(api):
    data = make_instance(patient_id="RAW")
    stored = store_instance(api, data)
    pixels = pydicom.dcmread(io.BytesIO(data)).PixelData
    raw = api.get(f"/instances/{stored['ID']}/frames/0/raw")
    assert raw["Content-Type"] == "application/octet-stream" and raw.content == pixels
    gz = api.get(f"/instances/{stored['ID']}/frames/0/raw.gz")
    assert gz["Content-Type"] == "application/gzip" and gzip.decompress(gz.content) == pixels
    assert api.get(f"/instances/{stored['ID']}/frames/1/raw").status_code == 400


def test_pdf_of_an_encapsulated_pdf_and_404_for_an_image(api):
    document = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF"
    stored = store_instance(api, encapsulated_pdf(document))
    response = api.get(f"/instances/{stored['ID']}/pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content == document
    image = store_instance(api, make_instance(patient_id="NOTPDF"))
    assert api.get(f"/instances/{image['ID']}/pdf").status_code == 404


def encapsulated_pdf(document):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    meta.MediaStorageSOPInstanceUID = uid("pdf", "instance")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = "PDF"
    ds.StudyInstanceUID = uid("pdf", "study")
    ds.SeriesInstanceUID = uid("pdf", "series")
    ds.Modality = "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = document + b"\0" * (len(document) % 2)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
