"""The header of a Part 10 file read straight from its bytes, for the files most
senders send: little endian, explicit or implicit VR, well formed.

pydicom stays the reference. Its reading builds an object per element and
converts values through several layers: most of the CPU a store costs. What it
must decide for ingest is small (the file meta's transfer syntax and SOP class,
the main tags' text, whether the file is truncated or nests too deep), and for
a well-formed file those follow from the element headers alone. walk() answers
only where its answer is certain to equal pydicom's (tests/archive/test_header_walk.py
checks that on pydicom's test files and the hostile corpus); on anything
unusual it answers None and pydicom reads the file, so every refusal and every
odd file is still judged by pydicom alone.
"""

import struct

from pydicom.datadict import DicomDictionary
from pydicom.uid import AllTransferSyntaxes, UID

# The one file size above which pydicom reads the header (it skips large values
# without holding the file in memory; here the file is one bytes object).
MAX_BYTES = 8 * 1024 * 1024

# As pydicom.uid says: every little endian, explicit VR syntax but the deflated one
# (compressed pixel data is encapsulated in an explicit VR data set).
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = frozenset(
    uid for uid in AllTransferSyntaxes
    if UID(uid).is_little_endian and not UID(uid).is_implicit_VR and not UID(uid).is_deflated
)

# PS3.5 §6.2 value representations, and those with a 4-byte length after 2 reserved bytes (§7.1.2).
VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV",
                 "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"})
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})

UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
SEQUENCE_END_BYTES = b"\xfe\xff\xdd\xe0"

_TAG = struct.Struct("<HH")
_SHORT = struct.Struct("<H")
_LONG = struct.Struct("<I")
_ITEM = struct.Struct("<HHI")


class Unusual(Exception):
    """Not a file walk() answers for: pydicom reads it."""


class Header:
    """What walk() read: the file meta's transfer syntax and media SOP class, and the
    top-level elements asked for, as (VR, value bytes) by tag."""

    __slots__ = ("transfer_syntax", "media_class", "elements")

    def __init__(self, transfer_syntax, media_class, elements):
        self.transfer_syntax = transfer_syntax
        self.media_class = media_class
        self.elements = elements


def walk(data, wanted, max_nesting):
    """The Header of the Part 10 file `data` (bytes), keeping the top-level elements
    whose tags are in `wanted`; None when pydicom must read it: big endian or
    deflated, truncated, nested more than `max_nesting` sequences deep, elements out
    of order or repeated, a VR pydicom would guess or correct, a delimiter out of
    place. The value of an implicit VR element is given with its dictionary VR."""
    try:
        return _walk(data, wanted, max_nesting)
    except (Unusual, struct.error):
        return None


def _walk(data, wanted, max_nesting):
    size = len(data)
    if size < 132 or data[128:132] != b"DICM":
        raise Unusual
    meta = {}
    position = _meta(data, 132, meta)
    transfer_syntax = _uid_text(meta.get(0x00020010))
    media_class = _uid_text(meta.get(0x00020002)) if 0x00020002 in meta else ""
    if transfer_syntax == IMPLICIT:
        implicit = True
    elif transfer_syntax in EXPLICIT:
        implicit = False
    else:
        raise Unusual
    elements = {}
    walker = _Walker(data, implicit, max_nesting)
    walker.dataset(position, size, 0, wanted, elements)
    return Header(transfer_syntax, media_class, elements)


def _meta(data, position, meta):
    """The file meta group (explicit VR little endian whatever the data set's syntax,
    PS3.10 §7.1) into `meta`; where the data set starts."""
    size = len(data)
    previous = -1
    while position + 8 <= size and data[position] == 2 and data[position + 1] == 0:
        group, element = _TAG.unpack_from(data, position)
        tag = group << 16 | element
        vr = data[position + 4:position + 6].decode("latin-1")
        if vr not in VRS or tag <= previous:
            raise Unusual
        previous = tag
        if vr in LONG_VRS:
            length = _LONG.unpack_from(data, position + 8)[0]
            start = position + 12
        else:
            length = _SHORT.unpack_from(data, position + 6)[0]
            start = position + 8
        end = start + length
        if length == UNDEFINED or end > size:
            raise Unusual
        meta[tag] = (vr, data[start:end])
        position = end
    return position


def _uid_text(element):
    if element is None:
        raise Unusual
    vr, value = element
    text = value.decode("latin-1").strip("\0 ")
    # pydicom turns a value with a backslash into several; anything but a plain
    # UID is left to its reading (and to ingest's refusal).
    if vr != "UI" or not text.replace(".", "").isdigit() or not text.isascii():
        raise Unusual
    return text


def _uppercase(byte):
    return 0x41 <= byte <= 0x5A


class _Walker:
    def __init__(self, data, implicit, max_nesting):
        self.data = data
        self.size = len(data)
        self.implicit = implicit
        self.max_nesting = max_nesting

    def dataset(self, position, end, depth, wanted, elements):
        """Walk a data set from `position`: the top level or an item of defined length
        up to `end`, an item of undefined length (end None) to its delimiter. Where
        it ends."""
        data, size, implicit = self.data, self.size, self.implicit
        previous = -1
        first = True
        while True:
            if self._ends(position, end):
                return position
            group, element = _TAG.unpack_from(data, position)
            tag = group << 16 | element
            if tag == ITEM_END:
                if end is not None or _LONG.unpack_from(data, position + 4)[0] != 0:
                    raise Unusual
                return position + 8
            if group == 0xFFFE or group == 0x0002 or tag <= previous:
                raise Unusual
            previous = tag
            if implicit:
                # pydicom reads a data set as explicit VR when its first element looks like one.
                if first and _uppercase(data[position + 4]) and _uppercase(data[position + 5]):
                    raise Unusual
                length = _LONG.unpack_from(data, position + 4)[0]
                entry = DicomDictionary.get(tag)
                vr = entry[0] if entry is not None else None
                start = position + 8
            else:
                if not (_uppercase(data[position + 4]) and _uppercase(data[position + 5])):
                    raise Unusual  # pydicom would switch to implicit VR
                vr = data[position + 4:position + 6].decode("latin-1")
                if vr not in VRS:
                    raise Unusual
                if vr in LONG_VRS:
                    if position + 12 > size:
                        raise Unusual
                    length = _LONG.unpack_from(data, position + 8)[0]
                    start = position + 12
                else:
                    length = _SHORT.unpack_from(data, position + 6)[0]
                    start = position + 8
            first = False
            if vr == "SQ":
                # ingest refuses a sequence nested deeper than max_nesting (top level: 1).
                if depth + 1 > self.max_nesting:
                    raise Unusual
                position = self.sequence(start, None if length == UNDEFINED else start + length, depth + 1)
                continue
            if length == UNDEFINED:
                if tag == PIXEL_DATA and depth == 0 and not implicit and vr in ("OB", "OW"):
                    position = self.encapsulated(start)
                    continue
                raise Unusual
            position = start + length
            if position > size:
                raise Unusual  # a value longer than what remains: truncated
            if depth == 0 and tag in wanted:
                elements[tag] = (vr, data[start:position])

    def _ends(self, position, end):
        """Whether a data set or sequence of defined length ends at `position`; raises
        Unusual past its end, or where no element header fits in the file (truncated)."""
        if end is not None:
            if position == end:
                return True
            if position > end:
                raise Unusual
        if position + 8 > self.size:
            raise Unusual
        return False

    def sequence(self, position, end, depth):
        data, size = self.data, self.size
        while True:
            if self._ends(position, end):
                return position
            group, element, length = _ITEM.unpack_from(data, position)
            tag = group << 16 | element
            if tag == SEQUENCE_END:
                if end is not None or length != 0:
                    raise Unusual
                return position + 8
            if tag != ITEM:
                raise Unusual
            start = position + 8
            if length == UNDEFINED:
                position = self.dataset(start, None, depth, (), None)
            else:
                if start + length > size:
                    raise Unusual
                position = self.dataset(start, start + length, depth, (), None)

    def encapsulated(self, position):
        """Encapsulated pixel data (PS3.5 §A.4): pydicom reads it up to the first
        Sequence Delimitation tag in its bytes; its fragments must end right there."""
        data = self.data
        delimiter = data.find(SEQUENCE_END_BYTES, position)
        if delimiter < 0 or delimiter + 8 > self.size or _LONG.unpack_from(data, delimiter + 4)[0] != 0:
            raise Unusual
        while position < delimiter:
            group, element, length = _ITEM.unpack_from(data, position)
            if (group << 16 | element) != ITEM or length == UNDEFINED:
                raise Unusual
            position += 8 + length
        if position != delimiter:
            raise Unusual
        return delimiter + 8
