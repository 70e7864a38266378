"""The tags panel's data: tag number, VR, name and value of every element, sequences as items."""

import io

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from archive import ingest
from tests.dicomgen import make_instance


def test_tags_come_with_number_vr_name_and_nested_sequences(admin):
    ds = pydicom.dcmread(io.BytesIO(make_instance(patient_name="DOE^JOHN")))
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D3000", "SRT", "Chest"
    ds.AnatomicRegionSequence = Sequence([code])
    buffer = io.BytesIO()
    ds.save_as(buffer)
    stored = ingest.store(buffer.getvalue(), ingest.Origin.http("127.0.0.1", "admin"))
    response = admin.get(f"/ui/instances/{stored.instance_id}/tags")
    assert response.status_code == 200
    elements = {e["tag"]: e for e in response.json()["elements"]}
    assert elements["0010,0010"] | {"items": None} == {"tag": "0010,0010", "vr": "PN", "name": "Patient's Name",
                                                       "keyword": "PatientName", "value": "DOE^JOHN", "items": None}
    assert elements["0002,0010"]["value"] == "1.2.840.10008.1.2.1"  # the file meta too
    (item,) = elements["0008,2218"]["items"]
    assert [(e["tag"], e["vr"], e["value"]) for e in item] == [
        ("0008,0100", "SH", "T-D3000"), ("0008,0102", "SH", "SRT"), ("0008,0104", "LO", "Chest")]
    pixels = elements["7FE0,0010"]
    assert pixels["value"] is None and pixels["length"] > 0
    assert admin.get("/ui/instances/nope/tags").status_code == 404
