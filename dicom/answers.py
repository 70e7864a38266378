"""C-FIND answers encoded by hand and written straight to the association's socket.

A 1,000-answer C-FIND cost ~0.86 s of the listener's CPU: each answer built as
a pydicom Dataset (values converted and validated), encoded by pydicom, turned
into a DIMSE message by pynetdicom (its command set encoded by pydicom again),
handed to pynetdicom's connection thread through a queue, and the handler
waiting for that thread to send it before making the next, so that a C-CANCEL
could be read in between. An answer is a short, flat list of text elements in
one character set (UTF-8): its bytes are written here, and the P-DATA-TF PDUs
around them; the command set of a pending response is the same for every answer
of a query, encoded once by pynetdicom. tests/dicom/test_find_answers.py holds
the bytes equal to pydicom's and pynetdicom's for the same answers.

Anything unusual (a value that is not plain text of its VR, a transfer syntax
other than Implicit or Explicit VR Little Endian, a TLS socket) takes the
general path: `Identifier.encode` answers None, or `Responder.open` does.

A C-CANCEL (or anything else from the peer) is seen before every answer by a
zero-timeout poll of the socket: pynetdicom's connection thread, which reads the
socket, then gets the time to read and decode it, and the query stops before the
next answer once the C-CANCEL is there. Answers already written cannot be called
back, and nothing in DICOM or TCP tells how far the peer has read them: written
as fast as they are made (tens of µs each), a whole answer would be in the peer's
buffers before an SCU that cancels on seeing its first answer could say so. So
the first PACED_ANSWERS answers go out one at a time, at most one per PACE
seconds (a cancel arriving meanwhile is seen at once), and the rest as fast as
they come: a peer that cancels within PACED_ANSWERS * PACE of the first answer
stops the query within a few answers, for at most that much wall time per query.
"""

import re
import select
import ssl
import struct
import time
from io import BytesIO

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.pdu import P_DATA_TF

# The answer's character set (Specific Character Set "ISO_IR 192"): the VRs
# whose values it encodes (PS3.5 6.1.2.3); the others are ASCII.
CHARACTER_SET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR"})
# pydicom converts IS and DS values to numbers and writes back the text it was
# given; text it cannot convert is an empty value in the general path. Only
# plain numbers are written here.
NUMBER = {"IS": re.compile(r"-?(0|[1-9][0-9]{0,10})"), "DS": re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")}
# Explicit VR: the VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})
# Every VR an element may have here (an empty value of any of them is written).
KNOWN_VRS = CHARACTER_SET_VRS | ASCII_VRS | frozenset(NUMBER) | LONG_VRS | frozenset(
    {"AT", "FD", "FL", "SL", "SS", "SV", "UL", "US", "UV"})
PENDING = 0xFF00
# How many bytes of answers are written at once, past the paced ones: a few
# dozen answers per system call.
FLUSH_BYTES = 16 * 1024
# How long the peer's C-CANCEL (or whatever it sent) may take to be read by
# pynetdicom's connection thread before the answers go on.
READ_WAIT = 1.0
# The first answers of a query, one at a time (see above): ~31 ms at most.
PACED_ANSWERS = 32
PACE = 0.001


class Identifier:
    """The elements of a query's answers, in tag order: fixed ones (their bytes
    made once) and those whose value each match gives."""

    def __init__(self, fixed, keywords, asked_sequences, explicit_vr):
        """`fixed`: {keyword: text} the same in every answer; `keywords`: those
        each answer's values give; `asked_sequences`: keywords asked as sequences
        (answered as empty sequences). Raises ValueError for a keyword this
        encoder does not know (the caller takes the general path)."""
        self.explicit_vr = explicit_vr
        slots = {}
        for keyword in asked_sequences:
            slots[_tag(keyword)] = (keyword, "SQ", None)
        for keyword in keywords:
            tag = _tag(keyword)
            slots.setdefault(tag, (keyword, _vr(keyword), None))
        for keyword, text in fixed.items():
            tag = _tag(keyword)
            vr = _vr(keyword)
            body = _value(vr, text)
            if body is None:
                raise ValueError(f"{keyword}: {text!r} is not plain text of VR {vr}")
            slots[tag] = (keyword, vr, self._element(tag, vr, body))
        # (keyword, VR, the bytes before the length, the whole element's bytes when fixed)
        self._slots = [(keyword, vr, self._header(tag, vr), fixed) for tag, (keyword, vr, fixed) in sorted(slots.items())]

    def encode(self, values):
        """The identifier's bytes for these values ({keyword: text}; missing or
        empty: zero length), or None when one is not plain text of its VR."""
        parts = []
        append = parts.append
        explicit = self.explicit_vr
        for keyword, vr, header, fixed in self._slots:
            if fixed is not None:
                append(fixed)
                continue
            text = values.get(keyword) if vr != "SQ" else None
            if text and not isinstance(text, str):
                return None
            if text:
                body = _value(vr, text)
                if body is None:
                    return None
            else:
                body = b""
            length = len(body)
            if explicit and vr not in LONG_VRS:
                if length > 0xFFFF:
                    return None
                append(header + length.to_bytes(2, "little"))
            else:
                append(header + length.to_bytes(4, "little"))
            append(body)
        return b"".join(parts)

    def _header(self, tag, vr):
        """The bytes before the length: tag, and VR (with its reserved bytes) when explicit."""
        prefix = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        if not self.explicit_vr:
            return prefix
        return prefix + vr.encode() + (b"\0\0" if vr in LONG_VRS else b"")

    def _element(self, tag, vr, body):
        header = self._header(tag, vr)
        size = 4 if not self.explicit_vr or vr in LONG_VRS else 2
        return header + len(body).to_bytes(size, "little") + body


def _tag(keyword):
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"unknown keyword {keyword!r}")
    return tag


def _vr(keyword):
    vr = dictionary_VR(keyword)
    if vr not in KNOWN_VRS:
        raise ValueError(f"{keyword}: VR {vr} is not written here")
    return vr


def _value(vr, text):
    """A value's bytes, padded to even length as pydicom pads them; None when it is
    not plain text of its VR (pydicom would convert it, or refuse it)."""
    if not text:
        return b""
    if vr in CHARACTER_SET_VRS:
        if vr == "PN" and any(name.endswith("=") for name in text.split("\\")):
            return None  # pydicom drops a name's empty trailing component groups
        try:
            body = text.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return body + b" " if len(body) % 2 else body
    if vr in ASCII_VRS:
        if not text.isascii() or "\0" in text:
            return None
        body = text.encode("ascii")
        if len(body) % 2:
            body += b"\0" if vr == "UI" else b" "
        return body
    number = NUMBER.get(vr)
    if number is not None:
        if not all(number.fullmatch(part) for part in text.split("\\")) or (vr == "DS" and len(text) > 16):
            return None
        body = text.encode("ascii")
        return body + b" " if len(body) % 2 else body
    return None  # a binary VR with a value: the general path converts it


class Responder:
    """Pending C-FIND responses of one request, written to the association's socket."""

    @classmethod
    def open(cls, event):
        """The responder of this C-FIND, or None when the general path must answer
        (a transfer syntax other than Implicit / Explicit VR Little Endian, TLS)."""
        context_id, _, transfer_syntax = event.context
        if transfer_syntax not in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
            return None
        dul = event.assoc.dul
        sock = getattr(dul.socket, "socket", None)
        if sock is None or isinstance(sock, ssl.SSLSocket):
            return None
        return cls(event, sock, context_id, transfer_syntax == ExplicitVRLittleEndian)

    def __init__(self, event, sock, context_id, explicit_vr):
        self.explicit_vr = explicit_vr
        self._assoc = event.assoc
        self._sock = sock
        self._context_id = context_id
        self._max_pdu = event.assoc.dimse.maximum_pdu_size
        self._command = pending_command(event.request, context_id, self._max_pdu)
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN | select.POLLPRI)
        self._buffer = []
        self._buffered = 0
        self._answers = 0
        self._next = 0.0  # when the next paced answer may go
        self.failed = False

    def pace(self):
        """Before each answer: during the first PACED_ANSWERS, wait until PACE after
        the previous one, or until the peer speaks."""
        if self._answers >= PACED_ANSWERS:
            return
        if not self._answers:
            self._wait_queue_empty()
            self._next = time.monotonic()
            return
        left = self._next - time.monotonic()
        if left > 0:
            self._poll.poll(left * 1000)

    def send(self, identifier):
        """Write a pending response holding these identifier bytes (buffered once
        past the paced answers)."""
        pdus = data_pdus(self._context_id, identifier, self._max_pdu)
        self._buffer.append(self._command)
        self._buffer.append(pdus)
        self._buffered += len(self._command) + len(pdus)
        self._answers += 1
        if self._answers <= PACED_ANSWERS:
            self._next = time.monotonic() + PACE
            self.flush()
        elif self._buffered >= FLUSH_BYTES:
            self.flush()

    def flush(self):
        """Write what is buffered; False when the connection failed (the
        association then ends: pynetdicom is told the transport closed)."""
        if not self._buffer or self.failed:
            return not self.failed
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        try:
            self._sock.sendall(data)
        except OSError:
            # What pynetdicom's own send does when the socket fails.
            self.failed = True
            self._assoc.dul.event_queue.put("Evt17")
        return not self.failed

    def peer_spoke(self):
        """Whether the peer sent anything since pynetdicom's thread last read the socket."""
        return bool(self._poll.poll(0))

    def let_read(self):
        """Write what is buffered, then give pynetdicom's connection thread the
        time to read and decode what the peer sent (a C-CANCEL is then seen by
        event.is_cancelled), READ_WAIT at most."""
        self.flush()
        dul = self._assoc.dul
        deadline = time.monotonic() + READ_WAIT
        quiet = 0
        while time.monotonic() < deadline and self._assoc.is_established:
            # Read, queued and acted on: twice in a row, with a pause between, so
            # an event the thread is still acting on is not missed.
            if not self.peer_spoke() and dul.event_queue.empty():
                quiet += 1
                if quiet == 2:
                    return
            else:
                quiet = 0
            time.sleep(0.0002)

    def _wait_queue_empty(self):
        """pynetdicom may still be sending what it queued before this request
        (the last response of the previous one): the socket is written in order."""
        queue = self._assoc.dul.to_provider_queue
        deadline = time.monotonic() + READ_WAIT
        while not queue.empty() and time.monotonic() < deadline:
            time.sleep(0.0002)


def pending_command(request, context_id, max_pdu):
    """The P-DATA-TF PDU(s) of a pending C-FIND response's command set, as pynetdicom encodes it."""
    response = C_FIND()
    response.MessageIDBeingRespondedTo = request.MessageID
    response.AffectedSOPClassUID = request.AffectedSOPClassUID
    response.Status = PENDING
    response.Identifier = BytesIO(b"\0")  # any: only its presence is in the command set
    message = C_FIND_RSP()
    message.primitive_to_message(response)
    message.data_set = None
    return b"".join(P_DATA_TF(primitive).encode() for primitive in message.encode_msg(context_id, max_pdu))


def data_pdus(context_id, data, max_pdu):
    """The P-DATA-TF PDUs of a data set, in fragments of at most the peer's maximum
    PDU length (0: no limit) less the 6 bytes of a PDV item's header (PS3.8 9.3.5)."""
    size = len(data) if not max_pdu else max_pdu - 6
    pdus = []
    for offset in range(0, len(data), size):
        fragment = data[offset:offset + size]
        last = offset + size >= len(data)
        pdus.append(struct.pack(">BBLLBB", 0x04, 0, len(fragment) + 6, len(fragment) + 2, context_id,
                                0x02 if last else 0x00))
        pdus.append(fragment)
    return b"".join(pdus)
