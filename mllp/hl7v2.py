"""HL7 v2 syntax: the header, character sets, escape sequences, field paths, the ACK.

The hl7 library splits a message into segments and fields. What it leaves to its
caller is done here: reading MSH before the rest is decoded (MSH-18 says how to
decode it), decoding with that character set, and unescaping: the library reads
each byte of a \\Xhh\\ sequence as a Latin-1 character, which is wrong for a UTF-8
message, so fields are taken raw and unescaped here (HL7 v2.5 §2.7).
"""

import datetime
import uuid
from dataclasses import dataclass, field

import hl7

# MSH-18 (HL7 table 0211) → Python codec. A message without MSH-18 is ASCII by the
# standard; senders that leave it empty often send UTF-8 or Latin-1, so such a
# message is read as UTF-8 when it decodes as UTF-8, else as Latin-1.
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "ISO IR6": "ascii",
    "ISO IR100": "latin-1",
    "UNICODE UTF-8": "utf-8",
    # Not in table 0211, but what some senders write for it.
    "UTF-8": "utf-8",
    "UNICODE": "utf-8",
}

# HL7 table 0357, the error codes an ERR segment carries.
SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT = 201
UNSUPPORTED_VERSION = 203
UNKNOWN_KEY = 204
RECORD_LOCKED = 206
INTERNAL_ERROR = 207
ERROR_NAMES = {
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT: "Unsupported event code",
    UNSUPPORTED_VERSION: "Unsupported version id",
    UNKNOWN_KEY: "Unknown key identifier",
    RECORD_LOCKED: "Application record locked",
    INTERNAL_ERROR: "Application internal error",
}

# HL7's "present but null" (v2.5 §2.5.3): the value is to be deleted.
NULL = '""'


class Rejected(Exception):
    """A message answered AE or AR: `code` (AE, AR), `error` (table 0357), the reason."""

    def __init__(self, code, error, reason, header=None):
        super().__init__(reason)
        self.code = code
        self.error = error
        self.reason = reason
        # The header as far as it could be read, to answer with (MSA-2: the control ID).
        self.header = header


@dataclass
class Header:
    """What MSH says, raw (still escaped), and how the message is written."""

    field_separator: str = "|"
    encoding_characters: str = "^~\\&"
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    message_code: str = ""
    trigger_event: str = ""
    control_id: str = ""
    processing_id: str = ""
    version: str = ""
    charset: str = ""
    codec: str = "ascii"
    fields: list = field(default_factory=list)

    @property
    def component(self):
        return self.encoding_characters[0]

    @property
    def repetition(self):
        return self.encoding_characters[1]

    @property
    def escape(self):
        return self.encoding_characters[2]

    @property
    def subcomponent(self):
        return self.encoding_characters[3]

    @property
    def message_type(self):
        return f"{self.message_code}^{self.trigger_event}" if self.trigger_event else self.message_code


def read_header(data):
    """The Header of a message (bytes), read before the message is decoded: MSH is
    ASCII whatever MSH-18 says. Raises Rejected (AR) for what is not an MSH."""
    text = data.lstrip(b"\r\n\t ")
    if not text.startswith(b"MSH"):
        raise Rejected("AR", SEGMENT_SEQUENCE_ERROR, "the message does not begin with an MSH segment")
    end = min((i for i in (text.find(b"\r"), text.find(b"\n")) if i >= 0), default=len(text))
    line = text[:end].decode("latin-1")
    if len(line) < 8:
        raise Rejected("AR", SEGMENT_SEQUENCE_ERROR, "the MSH segment is cut short")
    separator = line[3]
    fields = line.split(separator)
    encoding = fields[1]
    characters = set(encoding)
    if (len(encoding) not in (4, 5) or len(characters) != len(encoding) or separator in characters
            or any(c.isalnum() or c in " \r\n" for c in encoding + separator)):
        raise Rejected("AR", DATA_TYPE_ERROR,
                       f"MSH-1 / MSH-2 are not valid delimiters ({separator!r}, {encoding!r})")
    header = Header(field_separator=separator, encoding_characters=encoding[:4], fields=fields)

    def msh(n):  # MSH-n is fields[n - 1] from MSH-2 on
        return fields[n - 1] if len(fields) >= n else ""

    header.sending_application, header.sending_facility = msh(3), msh(4)
    header.receiving_application, header.receiving_facility = msh(5), msh(6)
    kind = msh(9).split(header.repetition)[0].split(header.component)
    header.message_code = kind[0].strip().upper()
    header.trigger_event = kind[1].strip().upper() if len(kind) > 1 else ""
    header.control_id = msh(10).strip()
    header.processing_id = msh(11).split(header.component)[0].strip()
    header.version = msh(12).split(header.component)[0].strip()
    header.charset = msh(18).split(header.repetition)[0].strip()
    if header.charset:
        codec = CHARSETS.get(header.charset.upper())
        if codec is None:
            raise Rejected("AR", TABLE_VALUE_NOT_FOUND, f"MSH-18: character set {header.charset!r} is not supported",
                           _answerable(header))
        header.codec = codec
    if not header.message_code or not header.trigger_event:
        raise Rejected("AR", REQUIRED_FIELD_MISSING, "MSH-9 (message type and trigger event) is missing", header)
    if not header.control_id:
        raise Rejected("AR", REQUIRED_FIELD_MISSING, "MSH-10 (message control ID) is missing", header)
    if header.version and not header.version.startswith("2."):
        raise Rejected("AR", UNSUPPORTED_VERSION, f"MSH-12: HL7 version {header.version!r} is not a v2 version",
                       header)
    return header


def _answerable(header):
    """The header, answered in ASCII: its own character set is one we cannot write."""
    header.charset, header.codec = "", "ascii"
    return header


def decode(data, header):
    """The message as text, decoded with the character set MSH-18 names. A message
    without MSH-18 decodes as UTF-8 if it can, else as Latin-1 (then also answered in it)."""
    if not header.charset:
        try:
            text = data.decode("utf-8")
            header.codec = "ascii" if text.isascii() else "utf-8"
        except UnicodeDecodeError:
            text = data.decode("latin-1")
            header.codec = "latin-1"
        return text
    try:
        return data.decode(header.codec)
    except UnicodeDecodeError as error:
        raise Rejected("AR", DATA_TYPE_ERROR,
                       f"the message is not valid {header.charset} (MSH-18): byte {error.start} cannot be decoded")


def parse(text):
    """The message parsed by the hl7 library. Segments end with CR; LF and CR LF,
    which some senders write, are taken as CR."""
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r\t ")
    try:
        return hl7.parse(text)
    except Exception as error:  # the library raises several types for a broken message
        raise Rejected("AR", SEGMENT_SEQUENCE_ERROR, f"the message cannot be parsed: {error}")


# --- fields ---------------------------------------------------------------------


@dataclass(frozen=True)
class Path:
    """An HL7 location: segment, field, and optionally component and subcomponent
    (e.g. ORC-7.4). The first repetition of the field is read."""

    segment: str
    field: int
    component: int = 0
    subcomponent: int = 0

    @classmethod
    def parse(cls, text):
        segment, _, rest = text.strip().upper().partition("-")
        numbers = rest.split(".")
        if len(segment) != 3 or not segment.isalnum() or not 1 <= len(numbers) <= 3 \
                or not all(n.isdigit() and int(n) > 0 for n in numbers):
            raise ValueError(f"{text!r} is not an HL7 field path such as PID-5 or ORC-7.4")
        return cls(segment, *(int(n) for n in numbers))

    def __str__(self):
        return f"{self.segment}-" + ".".join(str(n) for n in (self.field, self.component, self.subcomponent) if n)


def raw(segments, path, header):
    """The raw (still escaped) text at `path` in the segments of a scope (segment
    id → hl7 Segment), first repetition; "" when absent."""
    segment = segments.get(path.segment)
    if segment is None or path.field >= len(segment):
        return ""
    text = str(segment[path.field]).split(header.repetition)[0]
    if path.component:
        parts = text.split(header.component)
        text = parts[path.component - 1] if path.component <= len(parts) else ""
        if path.subcomponent:
            parts = text.split(header.subcomponent)
            text = parts[path.subcomponent - 1] if path.subcomponent <= len(parts) else ""
    return text


def components(text, header):
    """The components of a raw value, each its first subcomponent, unescaped."""
    return [unescape(part.split(header.subcomponent)[0], header) for part in text.split(header.component)]


def unescape(text, header):
    """Replace HL7's escape sequences (v2.5 §2.7): \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ by the
    delimiters, \\Xhh...\\ by the bytes it names in the message's character set,
    \\.br\\ by a line break; highlighting (\\H\\ \\N\\) and character-set switches
    (\\C..\\ \\M..\\, not supported) are dropped."""
    escape = header.escape
    if escape not in text:
        return text
    replacements = {"F": header.field_separator, "S": header.component, "T": header.subcomponent,
                    "R": header.repetition, "E": escape, ".br": "\r\n", ".sp": "\r\n", "H": "", "N": ""}
    out, pending = [], bytearray()

    def flush():
        if pending:
            # Bytes in the message's character set; \X..\ in an ASCII message can
            # only mean 8-bit text, read as Latin-1.
            codec = "latin-1" if header.codec == "ascii" else header.codec
            out.append(pending.decode(codec, errors="replace"))
            pending.clear()

    position = 0
    while position < len(text):
        start = text.find(escape, position)
        end = text.find(escape, start + 1) if start >= 0 else -1
        if start < 0 or end < 0:
            flush()
            out.append(text[position:])
            break
        if start > position:
            flush()
            out.append(text[position:start])
        sequence = text[start + 1:end]
        position = end + 1
        if sequence[:1] == "X" and len(sequence) > 1 and len(sequence) % 2 == 1 and _is_hex(sequence[1:]):
            pending.extend(bytes.fromhex(sequence[1:]))
            continue
        flush()
        if sequence in replacements:
            out.append(replacements[sequence])
        elif sequence[:1] in ("C", "M", "Z") or sequence[:1] == ".":
            continue
        else:
            out.append(escape + sequence + escape)  # not an escape sequence: kept as written
    flush()
    return "".join(out)


def escape(text, header):
    """Text written into a field of our answer, with the delimiters escaped."""
    e = header.escape
    text = text.replace(e, f"{e}E{e}")
    for character, name in ((header.field_separator, "F"), (header.component, "S"),
                            (header.subcomponent, "T"), (header.repetition, "R")):
        text = text.replace(character, f"{e}{name}{e}")
    return text.replace("\r\n", f"{e}.br{e}").replace("\r", f"{e}.br{e}").replace("\n", f"{e}.br{e}")


def _is_hex(text):
    try:
        bytes.fromhex(text)
        return True
    except ValueError:
        return False


# --- the acknowledgement ----------------------------------------------------------


def acknowledgement(header, code, reason="", error=None):
    """The ACK of a message (HL7 v2.5 §2.9.2, original mode), as bytes in the
    sender's character set: MSH, MSA (code, the message's control ID, the reason),
    and for AE / AR an ERR with the error code (table 0357) and the reason."""
    s = header.field_separator
    c = header.component
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d%H%M%S+0000")
    msh = ["MSH", header.encoding_characters, header.receiving_application, header.receiving_facility,
           header.sending_application, header.sending_facility, now, "",
           f"ACK{c}{header.trigger_event}{c}ACK" if header.trigger_event else "ACK",
           uuid.uuid4().hex[:20].upper(), header.processing_id or "P", header.version or "2.5",
           "", "", "", "", "", header.charset]
    segments = [_join(msh, s), _join(["MSA", code, header.control_id, escape(reason, header)], s)]
    if code != "AA":
        number = error or INTERNAL_ERROR
        name = ERROR_NAMES.get(number, "")
        if header.version[:3] in ("2.1", "2.2", "2.3", "2.4"):
            # Before v2.5 the code is in ERR-1 (error code and location).
            t = header.subcomponent
            segments.append(_join(["ERR", f"{c}{c}{c}{number}{t}{escape(name, header)}{t}HL70357"], s))
        else:
            segments.append(_join(["ERR", "", "", f"{number}{c}{name}{c}HL70357", "E", "", "", "",
                                   escape(reason, header)], s))
    return ("\r".join(segments) + "\r").encode(header.codec, errors="replace")


def _join(fields, separator):
    while len(fields) > 1 and fields[-1] == "":
        fields = fields[:-1]
    if fields[0] == "MSH":
        # MSH-1 is the separator itself: "MSH|^~\&|..." joins MSH-2 on directly.
        return "MSH" + separator + separator.join(fields[1:])
    return separator.join(fields)
