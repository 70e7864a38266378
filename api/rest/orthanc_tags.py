"""A stored instance's tags in Orthanc's JSON forms: full (/tags), simplified
(/tags?simplify, /simplified-tags) and short (/tags?short)."""

import re

import pydicom
from pydicom.datadict import dictionary_is_retired, private_dictionary_description

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
    values = list(value) if type(value).__name__ == "MultiValue" or isinstance(value, list) else [value]
    if element.VR == "AT":
        # Orthanc writes a tag value as "gggg,eeee" (1.10 shows only the first of several).
        return "\\".join(f"{int(v) >> 16:04x},{int(v) & 0xFFFF:04x}" for v in values)
    if element.VR in ("FL", "FD"):
        # Binary floats as Orthanc (DCMTK) prints them: 17 significant digits, "0" not "0.0".
        return "\\".join(format(float(v), ".17g") for v in values)
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\0 ")
    return "\\".join(str(v) for v in values)


def _elements(dataset, meta=False):
    for element in dataset:
        # The file meta group is apart from the data set; trailing padding is not data (PS3.10 §7.2).
        if (element.tag.group == 0x0002) != meta or element.tag == 0xFFFCFFFC:
            continue
        yield element


def _private_creator(dataset, tag):
    """The creator of a private element (PS3.5 §7.8.1), or None for a public one."""
    if not tag.is_private or tag.element < 0x1000:
        return None
    creator = dataset.get((tag.group << 16) | (tag.element >> 8))
    return str(creator.value).strip() if creator is not None and creator.value else None


def _name(element, creator):
    """The tag's name as Orthanc's (DCMTK's) dictionaries give it."""
    if element.tag.is_private_creator:
        return "PrivateCreator"
    if creator:
        try:
            description = private_dictionary_description(element.tag, creator)
        except KeyError:
            return "Unknown Tag & Data"
        # pydicom describes private tags in words ("Delta Start Time [msec]"), DCMTK
        # names them in CamelCase ("DeltaStartTime").
        words = re.findall(r"[A-Za-z0-9]+", re.sub(r"[\[(].*?[\])]", "", description))
        return "".join(word[0].upper() + word[1:] for word in words) or "Unknown Tag & Data"
    if not element.keyword:
        return "Unknown Tag & Data"
    return ("RETIRED_" if dictionary_is_retired(element.tag) else "") + element.keyword


def full(dataset, meta=False):
    """The data set's elements; with meta, the file meta information's (group 0002)."""
    answer = {}
    for element in _elements(dataset, meta):
        tag = f"{element.tag.group:04x},{element.tag.element:04x}"
        creator = _private_creator(dataset, element.tag)
        entry = {"Name": _name(element, creator)}
        if creator:
            entry["PrivateCreator"] = creator
        if element.VR == "SQ":
            entry.update(Type="Sequence", Value=[full(item) for item in element.value])
        elif element.VR in BINARY_VRS or element.tag == 0x7FE00010:
            entry.update(Type="Null", Value=None)
        else:
            text = _text(element)
            if len(text) > MAX_STRING_LENGTH:
                entry.update(Type="TooLong", Value=None)
            else:
                entry.update(Type="String", Value=text)
        answer[tag] = entry
    return answer


def simplified(dataset):
    return simplify(full(dataset))


def short(dataset):
    return simplify(full(dataset), by_tag=True)


def simplify(entries, by_tag=False):
    """Full tags in Orthanc's ?simplify form (keys are names) or ?short form (keys are
    tags, by_tag), at every depth."""
    answer = {}
    for tag, entry in entries.items():
        if entry["Type"] == "Sequence":
            value = [simplify(item, by_tag) for item in entry["Value"]]
        else:
            value = entry["Value"]
        answer[tag if by_tag else entry["Name"]] = value
    return answer


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


def raw_value(raw, element):
    """The bytes of a value as Orthanc's /content serves them: as written in the file,
    padding included (`raw` is the element as read, before pydicom converted it)."""
    if raw is not None and isinstance(getattr(raw, "value", None), bytes):
        return raw.value
    if isinstance(element.value, bytes):
        return element.value
    return _text(element).encode("utf-8")
