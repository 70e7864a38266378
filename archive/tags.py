"""Main DICOM tags per level, and the normalisation used for matching.

The lists are Orthanc 1.10's default main DICOM tags (OrthancFramework
DicomMap.cpp), so that `MainDicomTags` in our answers has the same members as
Orthanc's for the same file.
"""

import unicodedata

from pydicom.datadict import tag_for_keyword

PATIENT_TAGS = ("PatientName", "PatientBirthDate", "PatientSex", "OtherPatientIDs", "PatientID")

STUDY_TAGS = (
    "StudyDate",
    "StudyTime",
    "StudyID",
    "StudyDescription",
    "AccessionNumber",
    "StudyInstanceUID",
    "RequestedProcedureDescription",
    "InstitutionName",
    "RequestingPhysician",
    "ReferringPhysicianName",
)

SERIES_TAGS = (
    "SeriesDate",
    "SeriesTime",
    "Modality",
    "Manufacturer",
    "StationName",
    "SeriesDescription",
    "BodyPartExamined",
    "SequenceName",
    "ProtocolName",
    "SeriesNumber",
    "CardiacNumberOfImages",
    "ImagesInAcquisition",
    "NumberOfTemporalPositions",
    "NumberOfSlices",
    "NumberOfTimeSlices",
    "SeriesInstanceUID",
    "ImageOrientationPatient",
    "SeriesType",
    "OperatorsName",
    "PerformedProcedureStepDescription",
    "AcquisitionDeviceProcessingDescription",
    "ContrastBolusAgent",
)

INSTANCE_TAGS = (
    "InstanceCreationDate",
    "InstanceCreationTime",
    "AcquisitionNumber",
    "ImageIndex",
    "InstanceNumber",
    "NumberOfFrames",
    "TemporalPositionIdentifier",
    "SOPInstanceUID",
    "ImagePositionPatient",
    "ImageComments",
    "ImageOrientationPatient",
)


def element_text(dataset, keyword):
    """The value of a top-level element as Orthanc shows it: text, values joined by '\\'.

    None when the element is absent. Sequences and binary values have no text
    form here (none of the main tags is one).
    """
    tag = _TAGS.get(keyword) or tag_for_keyword(keyword)
    if tag is None or tag not in dataset:
        return None
    value = dataset[tag].value
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return value.decode("latin-1").rstrip(" \0")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(v) for v in value)
    return _text(value)


# Keyword → tag once, not on every lookup of every instance.
_TAGS = {k: tag_for_keyword(k) for k in PATIENT_TAGS + STUDY_TAGS + SERIES_TAGS + INSTANCE_TAGS
         + ("SOPClassUID", "SpecificCharacterSet")}


def _text(value):
    if value is None:
        return ""
    text = getattr(value, "original_string", None)
    if isinstance(text, str):
        return text.strip(" \0")
    return str(value).strip(" \0")


def main_tags(dataset, keywords):
    tags = {}
    for keyword in keywords:
        text = element_text(dataset, keyword)
        if text is not None:
            tags[keyword] = text
    return tags


def normalize(text):
    """Upper case, no accents, trimmed: the form matching compares (as Orthanc's
    NormalizeIdentifier does), so 'Müller' is found by 'MULLER*'."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.upper().strip()
