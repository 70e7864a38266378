"""POST /tools/create-dicom: tags, a parent, an image or a PDF as a data URI."""

import base64
import io

import pydicom
import pytest
from PIL import Image

from tests.dicomgen import make_instance

pytestmark = pytest.mark.django_db(transaction=True)


def data_uri(mime, data):
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def png(mode, size=(5, 3), color=0):
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, "PNG")
    return data_uri("image/png", out.getvalue())


def create(api, body):
    return api.post("/tools/create-dicom", body, content_type="application/json")


def file_of(api, instance_id):
    return pydicom.dcmread(io.BytesIO(b"".join(api.get(f"/instances/{instance_id}/file").streaming_content)))


def test_an_rgb_png_becomes_a_secondary_capture(api):
    response = create(api, {"Tags": {"PatientName": "CREATED^ONE", "PatientID": "CR-1", "Modality": "OT"},
                            "Content": png("RGB", color=(10, 20, 30))})
    assert response.status_code == 200, response.content
    answer = response.json()
    assert set(answer) == {"ID", "ParentPatient", "ParentSeries", "ParentStudy", "Path", "Status"}
    dataset = file_of(api, answer["ID"])
    assert (dataset.PatientName, dataset.PatientID, dataset.Rows, dataset.Columns) == ("CREATED^ONE", "CR-1", 3, 5)
    assert dataset.PhotometricInterpretation == "RGB" and dataset.SamplesPerPixel == 3
    assert dataset.PixelData[:3] == bytes([10, 20, 30])
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"


def test_a_child_inherits_its_parent_study_and_refuses_overrides(api):
    parent = api.generic("POST", "/instances", make_instance(patient_id="PARENT-1", patient_name="PARENT^P"),
                         content_type="application/dicom").json()
    child = create(api, {"Tags": {"SeriesDescription": "KEY IMAGES"}, "Parent": parent["ParentStudy"],
                         "Content": png("L", color=7)})
    assert child.status_code == 200, child.content
    assert child.json()["ParentStudy"] == parent["ParentStudy"]
    assert child.json()["ParentSeries"] != parent["ParentSeries"]
    dataset = file_of(api, child.json()["ID"])
    assert str(dataset.PatientName) == "PARENT^P" and dataset.PhotometricInterpretation == "MONOCHROME2"
    refused = create(api, {"Tags": {"PatientName": "OTHER"}, "Parent": parent["ParentStudy"]})
    assert refused.status_code == 400 and refused.json()["OrthancStatus"] == 2020
    assert refused.json()["Details"] == "PatientName"


def test_a_pdf_is_encapsulated(api):
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    response = create(api, {"Tags": {"PatientName": "PDF^REPORT"}, "Content": data_uri("application/pdf", pdf)})
    assert response.status_code == 200, response.content
    dataset = file_of(api, response.json()["ID"])
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"
    assert dataset.EncapsulatedDocument.rstrip(b"\0") == pdf.rstrip(b"\0")
    assert dataset.MIMETypeOfEncapsulatedDocument == "application/pdf" and dataset.Modality == "OT"


def test_uids_need_force_and_json_values_make_sequences(api):
    assert create(api, {"Tags": {"SOPInstanceUID": "1.2.3.4"}}).json()["OrthancStatus"] == 2020
    forced = create(api, {"Tags": {"SOPInstanceUID": "1.2.3.4"}, "Force": True})
    assert forced.status_code == 200 and file_of(api, forced.json()["ID"]).SOPInstanceUID == "1.2.3.4"
    nested = create(api, {"Tags": {"ReferencedStudySequence": [{"ReferencedSOPClassUID": "1.2",
                                                                "ReferencedSOPInstanceUID": "1.3"}]},
                          "InterpretAsJson": True})
    assert nested.status_code == 200, nested.content
    assert file_of(api, nested.json()["ID"]).ReferencedStudySequence[0].ReferencedSOPInstanceUID == "1.3"
    # As Orthanc: a list of objects is a sequence without InterpretAsJson too, at any depth.
    deeper = create(api, {"Tags": {"ReferencedStudySequence": [
        {"ReferencedSOPClassUID": "1.2"}, {"0008,1110": [{"ReferencedSOPInstanceUID": "1.5"}]}]}})
    assert deeper.status_code == 200, deeper.content
    sequence = file_of(api, deeper.json()["ID"]).ReferencedStudySequence
    assert sequence[0].ReferencedSOPClassUID == "1.2" and sequence[1].ReferencedStudySequence[0].ReferencedSOPInstanceUID == "1.5"
    empty = create(api, {"Tags": {"ReferencedStudySequence": []}})
    assert len(file_of(api, empty.json()["ID"]).ReferencedStudySequence) == 0
    text = create(api, {"Tags": {"ReferencedStudySequence": "x"}}).json()
    assert (text["OrthancStatus"], text["Details"]) == \
        (15, 'While creating a DICOM instance, tag (0008,1110) has out-of-range value: "x"')
    inner = create(api, {"Tags": {"ReferencedStudySequence": [{"ReferencedSOPClassUID": 3}]}}).json()
    assert (inner["OrthancStatus"], inner["Details"]) == (5, "Bad Parameter type for tag 0008,1150")


def test_a_content_list_makes_a_series_one_instance_per_item(api):
    grey = png("L", (4, 3), 7)
    colour = png("RGB", (5, 3), (1, 2, 3))
    response = create(api, {"Tags": {"PatientID": "CR-SERIES", "SeriesDescription": "TWO"},
                            "Content": [grey, {"Content": colour, "Tags": {"ImageComments": "second"}}]})
    assert response.status_code == 200, response.content
    answer = response.json()
    assert set(answer) == {"ID", "Path", "Status"} and answer["Path"] == f"/series/{answer['ID']}"
    instances = sorted((file_of(api, i["ID"]) for i in api.get(f"/series/{answer['ID']}/instances").json()),
                       key=lambda d: int(d.InstanceNumber))
    assert [(int(d.InstanceNumber), int(d.ImageIndex), int(d.ImagesInAcquisition)) for d in instances] == \
        [(1, 1, 2), (2, 2, 2)]
    assert [(d.PhotometricInterpretation, d.Columns) for d in instances] == [("MONOCHROME2", 4), ("RGB", 5)]
    assert "ImageComments" not in instances[0] and instances[1].ImageComments == "second"
    assert len({d.SOPInstanceUID for d in instances}) == 2 and len({d.SeriesInstanceUID for d in instances}) == 1
    assert instances[1].pixel_array[0, 0].tolist() == [1, 2, 3]
    assert create(api, {"Content": [3]}).status_code == 400


@pytest.mark.parametrize("body", [
    {"Content": "not a data uri"},
    {"Content": "data:image/gif;base64,R0lGODlh"},
    {"Content": "data:image/png;base64,!!!"},
    {"Content": data_uri("image/png", b"not a png")},
    {"Tags": {"PatientName": 5}},
    {"Tags": {"NoSuchKeyword": "x"}},
])
def test_bad_bodies_are_400(api, body):
    assert create(api, body).status_code == 400
