"""WADO-RS metadata makes the DICOM JSON of most elements straight from their bytes
(api.dicomweb.raw_element_json) and leaves the others to pydicom, which stays the
reference: on every file of the header corpus (tests/headers.py: pydicom's files, its
character set files, the hostile corpus, generated variations) and on values chosen
for their edges, each element made so is the JSON pydicom's conversion gives."""

import io
import json

import pytest
from pydicom.filewriter import correct_ambiguous_vr_element

from api.dicomweb import element_json, raw_element_json, wado
from archive import transcode
from archive.errors import TranscodeError
from tests import headers
from tests.dicomgen import make_instance, uid

CORPUS = headers.files()
EDGES = [
    ("numbers", make_instance(sop_uid=uid("plain", 1), ImageOrientationPatient=[1, 0, 0, 0, 0.70710678, -0.70710678],
                              WindowCenter=["40", "400"], WindowWidth=["1e3", ".5"], SliceThickness="+2.",
                              SeriesNumber="+007", AcquisitionNumber=" 12", ImagesInAcquisition="-0",
                              RescaleIntercept="-1024.0",
                              FrameTimeVector=[1.5, 2.25], PatientWeight="70.25 ")),
    ("texts", make_instance(sop_uid=uid("plain", 2), OtherPatientIDs=["A1", " B2 ", ""], ImageType=["ORIGINAL", "", "AXIAL"],
                            StationName="  STATION ", RetrieveAETitle=[" AE1 ", "AE2"], ImageComments="a\\b  ",
                            StudyComments="", AdditionalPatientHistory="line 1\r\nline 2",
                            ReferringPhysicianName=["SMITH^ANNE", "DOE^J"], PerformingPhysicianName=["A^B", ""],
                            RequestingPhysician="Yamada^Tarou=山田^太郎", NameOfPhysiciansReadingStudy="")),
]


def _compared(data):
    """(tag, made from the bytes, pydicom's) for each element made from its bytes."""
    try:
        dataset, _ = transcode.read_header(io.BytesIO(data), defer_size=wado.BULK_SIZE)
    except TranscodeError:
        return []
    compared = []
    for tag in list(dataset.keys()):
        item = dataset.get_item(tag, keep_deferred=True)
        vr = wado._vr(tag, item)
        plain = wado._plain_json(tag, item, vr)
        if plain is None:
            continue
        try:
            reference = element_json(correct_ambiguous_vr_element(dataset[tag], dataset,
                                                                  dataset.original_encoding[1]))
        except Exception:  # pydicom cannot convert it (a hostile file): no reference to compare with
            continue
        compared.append((f"{tag:08X}", json.dumps(plain, sort_keys=True), json.dumps(reference, sort_keys=True)))
    return compared


FILES = CORPUS + EDGES


@pytest.mark.parametrize("name,data", FILES, ids=[name for name, _ in FILES])
def test_each_element_made_from_its_bytes_is_what_pydicom_gives(name, data):
    for tag, plain, reference in _compared(data):
        assert plain == reference, tag


def test_most_elements_of_a_common_file_are_made_from_their_bytes():
    data = make_instance(sop_uid=uid("plain", "common"))
    dataset, _ = transcode.read_header(io.BytesIO(data), defer_size=wado.BULK_SIZE)
    total = sum(1 for tag in dataset.keys() if tag & 0xFFFF)
    assert len(_compared(data)) >= 0.9 * total


@pytest.mark.parametrize("vr,value,expected", [
    ("IS", b"1A", None),  # not a number: pydicom's conversion says how it is sent
    ("DS", b"NaN ", None),
    ("PN", b"A^B\\", None),  # an empty name among names
    ("PN", b"A^B=C^D", None),  # ideographic groups
    ("LO", "Müller".encode("latin-1"), None),  # decoded by the data set's character sets
    ("SH", b"\x1b$B", None),  # an escape sequence
    ("US", b"\x01", None),  # a length no number divides
    ("OB", b"\x00\x01", None),
    ("SQ", b"", None),
    ("US", b"\x01\x00\x02\x00", {"vr": "US", "Value": [1, 2]}),
    ("CS", b"  ", {"vr": "CS"}),
])
def test_what_is_left_to_pydicom(vr, value, expected):
    assert raw_element_json(vr, value) == expected
