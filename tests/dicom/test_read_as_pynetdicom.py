"""What the listener reads itself where pynetdicom would decode a C-STORE request's
command set with pydicom (dicom.scp.read_stores_directly): the same request primitive,
queued the same way, and pynetdicom's own reading for anything unusual."""

import io
import struct

import pytest
from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu_primitives import P_DATA

from dicom.scp import _store_request, read_stores_directly

FIELDS = ("MessageID", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "Priority",
          "MoveOriginatorApplicationEntityTitle", "MoveOriginatorMessageID")
DATA_SET = b"\x08\x00\x16\x00\x02\x00\x00\x001\x00" * 7


class _Association:
    """What pynetdicom's DIMSE provider asks of its association when it receives."""

    def __init__(self, handlers=()):
        self.handlers = list(handlers)
        self.aborted = []
        self.dul = type("DUL", (), {"event_queue": type("Q", (), {"put": lambda _, e: self.aborted.append(e)})()})()
        self.dimse = DIMSEServiceProvider(self)
        self.abort = self._abort_nonblocking = self._abort_blocking = lambda: self.aborted.append("abort")

    def get_handlers(self, event):
        return self.handlers if event == evt.EVT_DIMSE_RECV else []


def _pdata(*values):
    pdata = P_DATA()
    pdata.presentation_data_value_list.extend(values)
    return pdata


def _request(message_id=7, sop_class="1.2.840.10008.5.1.4.1.1.2", instance="1.2.826.0.1.3680043.8.498.1",
             priority=2, mover=None, mover_id=None):
    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = sop_class
    request.AffectedSOPInstanceUID = instance
    request.Priority = priority
    if mover is not None:
        request.MoveOriginatorApplicationEntityTitle = mover
    if mover_id is not None:
        request.MoveOriginatorMessageID = mover_id
    request.DataSet = io.BytesIO(DATA_SET)
    return request


def _command(request):
    """The command set pynetdicom encodes for the request (its first PDV, without the header byte)."""
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    pdvs = next(iter(message.encode_msg(1, 0))).presentation_data_value_list
    return pdvs[0][1][1:]


def _element(element, value):
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _rebuilt(command, drop=(), add=b"", replace=None):
    """The command set with elements dropped, replaced or added (its group length kept as it was)."""
    out, offset = [], 0
    while offset < len(command):
        group, element, length = struct.unpack_from("<HHI", command, offset)
        value = command[offset + 8:offset + 8 + length]
        offset += 8 + length
        if element in drop:
            continue
        if replace and element in replace:
            value = replace[element]
        out.append(_element(element, value))
    return b"".join(out) + add


def _received(command, fragments, context_id=3, handlers=(), direct=True):
    assoc = _Association(handlers)
    if direct:
        read_stores_directly(assoc)
    assoc.dimse.receive_primitive(_pdata((context_id, b"\x03" + command)))
    for index, fragment in enumerate(fragments):
        last = index == len(fragments) - 1
        assoc.dimse.receive_primitive(_pdata((context_id, (b"\x02" if last else b"\x00") + fragment)))
    queued = []
    while not assoc.dimse.msg_queue.empty():
        queued.append(assoc.dimse.msg_queue.get())
    return queued, assoc.aborted


def _seen(queued):
    return [(context_id, type(primitive).__name__, {name: getattr(primitive, name, None) for name in FIELDS},
             getattr(primitive, "_context_id", None), primitive.DataSet.getvalue() if getattr(primitive, "DataSet", None)
             else None) for context_id, primitive in queued]


PLAIN = [
    _request(),
    _request(message_id=1, priority=0),
    _request(message_id=65535, priority=1, instance="1.2.3"),
    _request(instance="2.25.1234567890123456789012345678901234567890", sop_class="1.2.840.10008.5.1.4.1.1.4"),
    _request(mover="MOVER", mover_id=12),
    _request(mover="A", mover_id=0),
    _request(instance="1.2.826.0.1.3680043.8.498." + "1" * 38),
]


@pytest.mark.parametrize("request_", PLAIN, ids=range(len(PLAIN)))
def test_a_plain_store_request_is_read_here_into_pynetdicoms_primitive(request_):
    command = _command(request_)
    assert _store_request(_pdata((3, b"\x03" + command))) is not None  # read here, not by pynetdicom
    for fragments in ([DATA_SET], [DATA_SET[:10], DATA_SET[10:30], DATA_SET[30:]]):
        expected, aborted = _received(command, fragments, direct=False)
        assert len(expected) == 1 and not aborted
        assert _seen(_received(command, fragments)[0]) == _seen(expected)


def _odd_commands():
    command = _command(_request(mover="MOVER", mover_id=3))
    padded = _command(_request(instance="1.2.34"))  # an odd-length UID padded with a NUL
    return {
        "a UID padded with a space": _rebuilt(padded, replace={0x1000: b"1.2.3 "}),
        "an AE title with a space inside": _rebuilt(command, replace={0x1030: b"MY AE "}),
        "an AE title of spaces": _rebuilt(command, replace={0x1030: b"    "}),
        "a private element": _rebuilt(command, add=_element(0x9999, b"XY")),
        "no SOP instance": _rebuilt(command, drop=(0x1000,)),
        "a priority of 5": _rebuilt(command, replace={0x0700: b"\x05\x00"}),
        "a message ID of 4 bytes": _rebuilt(command, replace={0x0110: b"\x01\x00\x00\x00"}),
        "an invalid UID": _rebuilt(command, replace={0x0002: b"1.2.x"}),
        "a non-ASCII UID": _rebuilt(command, replace={0x0002: b"1.2.\xe9"}),
        "a truncated element": command[:-3],
        "an element twice": command + _element(0x0110, b"\x02\x00"),
        "a padded UID": padded,
    }


@pytest.mark.parametrize("name", list(_odd_commands()))
def test_an_unusual_request_is_read_by_pynetdicom_as_before(name):
    command = _odd_commands()[name]
    expected = _received(command, [DATA_SET], direct=False)
    assert _seen(_received(command, [DATA_SET])[0]) == _seen(expected[0])
    assert _received(command, [DATA_SET])[1] == expected[1]


def test_only_a_store_request_with_a_data_set_is_read_here():
    echo = C_ECHO()
    echo.MessageID = 5
    from pynetdicom.dimse_messages import C_ECHO_RQ
    message = C_ECHO_RQ()
    message.primitive_to_message(echo)
    command = next(iter(message.encode_msg(1, 0))).presentation_data_value_list[0][1]
    assert _store_request(_pdata((1, command))) is None
    store = _command(_request())
    assert _store_request(_pdata((1, b"\x03" + _rebuilt(store, replace={0x0800: b"\x01\x01"})))) is None
    assert _store_request(_pdata((1, b"\x01" + store))) is None  # not the last fragment of its command set
    assert _store_request(_pdata((1, b"\x03" + store), (1, b"\x02" + DATA_SET))) is None  # not alone in its P-DATA


def test_a_logged_association_is_read_by_pynetdicom():
    command = _command(_request())
    seen = []
    queued, _ = _received(command, [DATA_SET], handlers=[(lambda event: seen.append(event), None)])
    assert len(queued) == 1 and len(seen) == 1  # the handler saw the message pynetdicom decoded
    assert seen[0].message.command_set.AffectedSOPInstanceUID == "1.2.826.0.1.3680043.8.498.1"


def test_a_command_fragment_among_the_data_set_goes_back_to_pynetdicom():
    command = _command(_request())
    echo_like = _command(_request(message_id=9))
    for direct in (False, True):
        assoc = _Association()
        if direct:
            read_stores_directly(assoc)
        assoc.dimse.receive_primitive(_pdata((3, b"\x03" + command)))
        assoc.dimse.receive_primitive(_pdata((3, b"\x00" + DATA_SET[:10])))
        assoc.dimse.receive_primitive(_pdata((3, b"\x03" + echo_like)))
        assoc.dimse.receive_primitive(_pdata((3, b"\x02" + DATA_SET[10:])))
        queued = []
        while not assoc.dimse.msg_queue.empty():
            queued.append(assoc.dimse.msg_queue.get())
        if direct:
            assert _seen(queued) == baseline and assoc.aborted == aborted
        else:
            baseline, aborted = _seen(queued), assoc.aborted
