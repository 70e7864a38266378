"""Main DICOM tags per level, and the normalisation used for matching.

The lists are Orthanc 1.10's default main DICOM tags (OrthancFramework
DicomMap.cpp), so that `MainDicomTags` in our answers has the same members as
Orthanc's for the same file.
"""

import unicodedata

from pydicom.datadict import dictionary_VR, tag_for_keyword

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

# Not main tags: what viewers need of an instance before they fetch it (QIDO-RS).
IMAGE_TAGS = ("Rows", "Columns", "BitsAllocated")


def element_text(dataset, keyword):
    """The value of a top-level element as Orthanc shows it: text, values joined by '\\'.

    None when the element is absent. Sequences and binary values have no text
    form here (none of the main tags is one).
    """
    tag = _TAGS.get(keyword) or tag_for_keyword(keyword)
    if tag is None or tag not in dataset:
        return None
    text = _raw_text(dataset, tag)
    if text is not None:
        return text
    return converted_text(dataset, tag)


def converted_text(dataset, tag):
    """element_text() through pydicom's conversion of the value: the reference that
    _raw_text() must agree with, and what unusual elements go through."""
    value = dataset[tag].value
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        text = value.decode("latin-1").rstrip(" \0")
    elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = "\\".join(_text(v) for v in value)
    else:
        text = _text(value)
    # A NUL inside a value (no text VR allows one) cannot be indexed: PostgreSQL
    # refuses it in a text column, and the store failed with a 500.
    return text.replace("\0", "")


# Keyword → tag once, not on every lookup of every instance.
_TAGS = {k: tag_for_keyword(k) for k in PATIENT_TAGS + STUDY_TAGS + SERIES_TAGS + INSTANCE_TAGS + IMAGE_TAGS
         + ("SOPClassUID", "SpecificCharacterSet")}


def _text(value):
    if value is None:
        return ""
    text = getattr(value, "original_string", None)
    if isinstance(text, str):
        return text.strip(" \0")
    return str(value).strip(" \0")


# Text VRs whose bytes are read in the dataset's character set; pydicom reads the
# other text VRs (codes, dates, numbers, UIDs) as ISO 8859-1 whatever the set.
_CHARSET_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC"}
_PLAIN_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"}
# Values that are one string, never split at a backslash.
_SINGLE_VRS = {"LT", "ST", "UT"}
# SpecificCharacterSet values read here without pydicom: the default repertoire,
# Latin-1 and UTF-8. Code extensions (ISO 2022 escapes) and the rest go through
# pydicom's conversion.
_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


def _raw_text(dataset, tag):
    """element_text() read from the element's bytes, without pydicom's value
    conversion (most of the cost of parsing a header); None when the element is
    unusual (binary, already converted, big endian, another character set) and
    must go through converted_text()."""
    raw = dataset.get_item(tag)
    value = getattr(raw, "value", None)
    if not isinstance(value, bytes) or not getattr(raw, "is_little_endian", False):
        return None
    vr = raw.VR
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return None
    if vr in _CHARSET_VRS:
        encoding = _encoding(dataset)
        if encoding is None:
            return None
    else:
        encoding = "latin-1"
    return bytes_text(vr, value, encoding)


def bytes_text(vr, value, encoding):
    """The text of an element's value bytes of value representation `vr`, its text
    VRs read in `encoding` (charset_encoding(); None: one only pydicom reads); None when pydicom's conversion
    must decide: not a text VR, bytes the encoding cannot read, a NUL inside,
    person names with ideographic or phonetic groups."""
    if vr not in _CHARSET_VRS and vr not in _PLAIN_VRS:
        return None
    codec = encoding if vr in _CHARSET_VRS else "latin-1"
    if codec is None:
        return None
    try:
        text = value.decode(codec)
    except UnicodeDecodeError:
        return None
    if vr == "PN" and "=" in text:
        return None  # ideographic and phonetic groups: pydicom drops the empty ones
    if vr in _SINGLE_VRS or "\\" not in text:
        text = text.strip(" \0")
    else:
        text = "\\".join(part.strip(" \0") for part in text.split("\\"))
    # A NUL inside a value is damage, not padding: pydicom's reading decides.
    return None if "\0" in text else text


def _encoding(dataset):
    raw = dataset.get_item(_TAGS["SpecificCharacterSet"]) if _TAGS["SpecificCharacterSet"] in dataset else None
    if raw is None:
        return "latin-1"
    return charset_encoding(raw.value)


def charset_encoding(value):
    """The codec of a SpecificCharacterSet value (its raw bytes or pydicom's
    conversion), None for one that only pydicom reads (code extensions, and the
    sets other than the default, Latin-1 and UTF-8)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None  # several values: code extensions
    return _CHARSETS.get(value.strip(" \0"))


def main_tags(dataset, keywords):
    return collect(lambda keyword: element_text(dataset, keyword), keywords)


def collect(text, keywords):
    """The main tags `text` (a keyword's text, or None when absent) gives for `keywords`."""
    tags = {}
    for keyword in keywords:
        value = text(keyword)
        if value is not None:
            tags[keyword] = value
    return tags


def normalize(text):
    """Upper case, no accents, trimmed: the form matching compares (as Orthanc's
    NormalizeIdentifier does), so 'Müller' is found by 'MULLER*'."""
    if not text:
        return ""
    if text.isascii():  # nothing to decompose (most names and IDs): the same, at a tenth of the cost
        return text.upper().strip()
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.upper().strip()
