"""C-FIND answers written by hand (dicom/answers.py) are the bytes pydicom and pynetdicom write.

The listener encodes each answer's identifier, and the P-DATA-TF PDUs around it,
without building a pydicom Dataset; the general path (scp._answer, encoded by
pydicom, framed by pynetdicom) is the reference, for both transfer syntaxes a
C-FIND is answered in, every query level, and values that are plain text and
values that are not (those must be left to the general path).
"""

import itertools
from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF

from archive.models import Level
from dicom import answers, scp

OPTIONS = scp.Options(ae_title="PACSWEB")


def identifier(level, *keys, sequences=()):
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in keys:
        setattr(ds, keyword, "")
    for keyword in sequences:
        setattr(ds, keyword, [Dataset()])
    return ds


QUERIES = {
    "study": (Level.STUDY, identifier(
        "STUDY", "PatientName", "PatientID", "StudyDate", "StudyTime", "AccessionNumber", "StudyDescription",
        "ModalitiesInStudy", "NumberOfStudyRelatedInstances", "NumberOfStudyRelatedSeries", "StudyInstanceUID",
        "ReferringPhysicianName", "PatientBirthDate", "PatientSex", "RetrieveAETitle", "InstitutionName")),
    "study, a sequence asked": (Level.STUDY, identifier(
        "STUDY", "PatientName", "StudyInstanceUID", sequences=["ReferencedStudySequence", "ProcedureCodeSequence"])),
    "patient": (Level.PATIENT, identifier("PATIENT", "PatientName", "PatientID", "NumberOfPatientRelatedStudies",
                                          "OtherPatientIDs")),
    "series": (Level.SERIES, identifier("SERIES", "Modality", "SeriesNumber", "SeriesDescription",
                                        "SeriesInstanceUID", "NumberOfSeriesRelatedInstances", "BodyPartExamined")),
    "image": (Level.INSTANCE, identifier("IMAGE", "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
                                         "ImageComments", "AcquisitionDateTime", "SliceThickness")),
}

# Values as the index gives them: plain, non-ASCII in the answer's UTF-8, empty,
# odd and even lengths, multi-valued, with spaces kept.
PLAIN = [
    {"PatientName": "DOE^JOHN", "PatientID": "P1", "StudyDate": "20200301", "StudyTime": "120000.5",
     "AccessionNumber": "ACC1", "StudyDescription": "CHEST CT", "ModalitiesInStudy": "CT\\MR",
     "NumberOfStudyRelatedInstances": "10", "NumberOfStudyRelatedSeries": "2", "StudyInstanceUID": "1.2.3.4",
     "ReferringPhysicianName": "", "PatientBirthDate": "19700101", "PatientSex": "M"},
    {"PatientName": "Müller^Jürgen=ミュラー^ユルゲン", "PatientID": "ÄÖÜ-7", "StudyDate": "", "StudyTime": "",
     "AccessionNumber": "", "StudyDescription": "Thorax ", "ModalitiesInStudy": "CT\\MR\\PT",
     "NumberOfStudyRelatedInstances": "0", "StudyInstanceUID": "1.2.840.10008.5.1.4.1.1.2.99",
     "InstitutionName": "Hôpital Saint-Éloi", "PatientSex": ""},
    {"PatientName": "Wang^XiaoDong=王^小東", "PatientID": "P\\Q", "ModalitiesInStudy": "MR",
     "NumberOfStudyRelatedInstances": "12345", "NumberOfStudyRelatedSeries": "", "StudyInstanceUID": "1.2.34",
     "StudyDescription": "a\\b", "OtherPatientIDs": "X1\\Y22", "NumberOfPatientRelatedStudies": "3"},
    {"Modality": "CT", "SeriesNumber": "-3", "SeriesDescription": "SÉRIE 1", "SeriesInstanceUID": "1.2.3",
     "NumberOfSeriesRelatedInstances": "7", "BodyPartExamined": "CHEST", "SOPInstanceUID": "1.2.3.4.5",
     "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "InstanceNumber": "1", "ImageComments": "ok ünïcödé\\ö",
     "AcquisitionDateTime": "20200301120000.123456", "SliceThickness": "1.25", "PatientID": "P1",
     "StudyInstanceUID": "1.2"},
    {"SliceThickness": "-0.5\\10", "InstanceNumber": "0", "PatientName": "   ", "PatientID": "  X "},
    {},
]

# Values pydicom converts, refuses or writes in another character set: the
# general path answers them (the encoder says None).
UNUSUAL = [
    {"NumberOfStudyRelatedInstances": "ten"},
    {"NumberOfStudyRelatedInstances": "007"},
    {"NumberOfStudyRelatedInstances": " 7"},
    {"SliceThickness": "1e3"},
    {"PatientName": "Wang^XiaoDong=王^小東="},
    {"SliceThickness": "1.234567890123456789"},
    {"Modality": "ÇT"},
    {"StudyDate": "2020-03-01é"},
    {"SOPInstanceUID": "1.2\0"},
]


class Match:
    def __init__(self, values):
        self.values = values


def general(query, values, explicit_vr):
    level, ds = QUERIES[query]
    return encode(scp._answer(ds, level, Match(values), OPTIONS), not explicit_vr, True)


def by_hand(query, values, explicit_vr):
    level, ds = QUERIES[query]
    encoder = scp._encoder(ds, level, OPTIONS)
    assert encoder is not None
    return encoder(explicit_vr).encode(values)


@pytest.mark.parametrize("explicit_vr", [False, True], ids=["implicit", "explicit"])
@pytest.mark.parametrize("query", list(QUERIES))
def test_plain_answers_are_the_bytes_pydicom_writes(query, explicit_vr):
    for values in PLAIN:
        assert by_hand(query, values, explicit_vr) == general(query, values, explicit_vr), values


@pytest.mark.parametrize("explicit_vr", [False, True], ids=["implicit", "explicit"])
def test_values_pydicom_would_convert_are_left_to_it(explicit_vr):
    for values, query in itertools.product(UNUSUAL, QUERIES):
        level, ds = QUERIES[query]
        asked = set(scp._answer_keys(ds)) | set(scp.UNIQUE_KEYS[level])
        if not set(values) & asked:
            continue
        assert by_hand(query, values, explicit_vr) is None, (query, values)
        assert general(query, values, explicit_vr) is not None


def test_keys_the_encoder_does_not_know_leave_the_whole_query_to_pydicom():
    ds = identifier("IMAGE", "SOPInstanceUID", "Rows", "PixelData")
    assert scp._encoder(ds, Level.INSTANCE, OPTIONS) is None


def pynetdicom_pdus(request, context_id, identifier, max_pdu):
    response = C_FIND()
    response.MessageIDBeingRespondedTo = request.MessageID
    response.AffectedSOPClassUID = request.AffectedSOPClassUID
    response.Status = 0xFF00
    response.Identifier = BytesIO(identifier)
    message = C_FIND_RSP()
    message.primitive_to_message(response)
    return b"".join(P_DATA_TF(p).encode() for p in message.encode_msg(context_id, max_pdu))


@pytest.mark.parametrize("max_pdu", [0, 16, 100, 256, 16384])
def test_pending_responses_are_the_pdus_pynetdicom_sends(max_pdu):
    request = C_FIND()
    request.MessageID = 513
    request.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
    command = answers.pending_command(request, 7, max_pdu)
    for values in PLAIN:
        data = by_hand("study", values, False)
        assert command + answers.data_pdus(7, data, max_pdu) == pynetdicom_pdus(request, 7, data, max_pdu)
