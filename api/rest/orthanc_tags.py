"""A stored instance's tags in Orthanc's JSON forms: full (/tags), simplified
(/tags?simplify, /simplified-tags) and short (/tags?short)."""

import pydicom

# Orthanc's MaximumStringLength default: longer values are shown as "TooLong".
MAX_STRING_LENGTH = 256
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}


def read(stream):
    # Large values (pixel data) are skipped, not read: they are never shown.
    return pydicom.dcmread(stream, defer_size=MAX_STRING_LENGTH * 4)


def _text(element):
    value = element.value
    if value is None:
        return ""
    if type(value).__name__ == "MultiValue" or isinstance(value, list):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\0 ")
    return str(value)


def _elements(dataset, meta=False):
    for element in dataset:
        if (element.tag.group == 0x0002) != meta:
            continue
        yield element


def full(dataset, meta=False):
    """The data set's elements; with meta, the file meta information's (group 0002)."""
    answer = {}
    for element in _elements(dataset, meta):
        tag = f"{element.tag.group:04x},{element.tag.element:04x}"
        name = element.keyword or "Unknown Tag & Data"
        if element.VR == "SQ":
            answer[tag] = {"Name": name, "Type": "Sequence", "Value": [full(item) for item in element.value]}
        elif element.VR in BINARY_VRS or element.tag == 0x7FE00010:
            answer[tag] = {"Name": name, "Type": "Null", "Value": None}
        else:
            text = _text(element)
            if len(text) > MAX_STRING_LENGTH:
                answer[tag] = {"Name": name, "Type": "TooLong", "Value": None}
            else:
                answer[tag] = {"Name": name, "Type": "String", "Value": text}
    return answer


def simplified(dataset):
    return {entry["Name"]: _simplify(entry) for entry in full(dataset).values()}


def short(dataset):
    return {tag: _simplify(entry) for tag, entry in full(dataset).items()}


def _simplify(entry):
    if entry["Type"] == "Sequence":
        return [{e["Name"]: _simplify(e) for e in item.values()} for item in entry["Value"]]
    return entry["Value"]


Element = pydicom.dataelem.DataElement


def parse_tag(text):
    """'0010-0010' or '0010,0010' → an int tag, or None."""
    cleaned = text.replace("-", "").replace(",", "")
    if len(cleaned) != 8:
        return None
    try:
        return int(cleaned, 16)
    except ValueError:
        return None


def raw_value(element):
    """The bytes of a value as Orthanc's /content serves them (text as written)."""
    value = element.value
    if isinstance(value, bytes):
        return value
    return _text(element).encode("utf-8")
