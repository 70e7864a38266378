"""DIMSE service handlers: DICOM in, archive calls out.

As in pynetdicom's qrscp application, a handler translates the DICOM request
into a call of the archive layer (ingest.store, query.find, worklist.find) and
the answer back into statuses and datasets; it decides nothing itself. Who may
do what is asked of an access policy given by the caller (the listener command
wires the cluster's modality table), so this module knows no model outside the
archive.
"""

import copy
import functools
import logging
import socket
import struct
import time
from dataclasses import dataclass
from typing import Protocol

import pydicom
from django.db import close_old_connections, connection
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION, _config, evt
from pynetdicom.dsutils import decode, encode
from pynetdicom._handlers import standard_dimse_sent_handler
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from archive import dimse, ingest, query, worklist
from archive.errors import TranscodeError
from archive.dimse import (
    CANCEL, CANNOT_UNDERSTAND, IDENTIFIER_DOES_NOT_MATCH, NOT_AUTHORIZED, OUT_OF_RESOURCES,
    PENDING, SUCCESS, UNABLE_TO_PROCESS, status as _status,
)
from archive.models import Attachment, Instance, Level
from archive.storage import StorageError, get_storage
from archive import audit
from archive.db import DatabaseBusy
from dicom import answers
from dicom import reactor

log = logging.getLogger(__name__)


LEVELS = {"PATIENT": Level.PATIENT, "STUDY": Level.STUDY, "SERIES": Level.SERIES, "IMAGE": Level.INSTANCE}
UNIQUE_KEYS = {
    Level.PATIENT: ("PatientID",),
    Level.STUDY: ("PatientID", "StudyInstanceUID"),
    Level.SERIES: ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"),
    Level.INSTANCE: ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}
# PS3.4 C.6.1.1.2: a Study Root query has no PATIENT level.
STUDY_ROOT_PREFIX = "1.2.840.10008.5.1.4.1.2.2."
# Modality Worklist Information Model - FIND (PS3.4 K.6).
WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
MAX_SUBOPERATIONS = 65535
# What pynetdicom answers when an identifier cannot be encoded (C-FIND: 0xC312).
UNABLE_TO_ENCODE = 0xC312
TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}  # the sub-operation counters are US (PS3.4 C.4.2.3)


class AccessPolicy(Protocol):
    def allowed(self, operation: str, calling_aet: str, address: str) -> bool: ...

    def destination(self, aet: str) -> "tuple[str, int] | None": ...


@dataclass
class Options:
    ae_title: str
    max_find_answers: int = 0  # 0: no limit


def handlers(policy, options):
    """The evt handler list of a listener."""
    return [
        (evt.EVT_C_ECHO, releasing(handle_echo), [policy]),
        (evt.EVT_C_STORE, releasing(handle_store), [policy]),
        (evt.EVT_C_FIND, releasing_generator(handle_find), [policy, options]),
        (evt.EVT_C_MOVE, releasing_generator(handle_move), [policy]),
        (evt.EVT_C_GET, releasing_generator(handle_get), [policy]),
        (evt.EVT_ESTABLISHED, log_association, ["established"]),
        (evt.EVT_REJECTED, log_association, ["rejected"]),
        (evt.EVT_ABORTED, log_association, ["aborted"]),
        # In the association's thread, as it ends: its SQLite connection goes with it.
        (evt.EVT_RELEASED, close_connection),
        (evt.EVT_ABORTED, close_connection),
    ]


def peer(event):
    """(calling AE title, address) of the association's requestor."""
    requestor = event.assoc.requestor
    return requestor.ae_title.strip(), requestor.address


def allowed(event, policy, operation, what=None):
    """Whether the modality table lets the requestor do `operation`; a refusal
    is logged as `what` (the service asked, by default the operation)."""
    aet, address = peer(event)
    close_old_connections()
    # Decided once per association and operation: a modality sending 500 images
    # would otherwise read the modality table 500 times. A change of the table
    # applies from the peer's next association.
    decided = event.assoc.__dict__.setdefault("pacs_allowed", {})
    if operation not in decided:
        decided[operation] = policy.allowed(operation, aet, address)
    if decided[operation]:
        return True
    log.warning("refused %s from %s at %s: not allowed by the modality table", what or operation, aet, address)
    return False


def handle_echo(event, policy):
    return SUCCESS if allowed(event, policy, "echo") else NOT_AUTHORIZED


def part10(event):
    """The C-STORE's data set as a Part 10 file: what pynetdicom's
    event.encoded_dataset(include_meta=True) gives, byte for byte (a test
    compares), with its seven file meta elements written here. pynetdicom builds
    them as a pydicom FileMetaDataset, validating every UID, and writes them with
    pydicom's writer: a fifth of the listener's CPU for a small instance. A UID
    that is not plain digits and dots takes pynetdicom's way, which judges it."""
    request = event.request
    uids = (str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID), str(event.context.transfer_syntax))
    if not all(len(uid) <= 64 and ingest.UID_PATTERN.fullmatch(uid) for uid in uids):
        return event.encoded_dataset(include_meta=True)
    return b"".join((b"\0" * 128, b"DICM", file_meta(*uids), request.DataSet.getvalue()))


def file_meta(sop_class, sop_instance, transfer_syntax):
    """The file meta information pynetdicom writes for a received instance (PS3.10
    §7.1, explicit VR little endian), its group length first."""
    elements = b"".join((_META_VERSION, _meta_element(0x0002, "UI", sop_class),
                         _meta_element(0x0003, "UI", sop_instance), _meta_element(0x0010, "UI", transfer_syntax),
                         _META_IMPLEMENTATION))
    return struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(elements)) + elements


def _meta_element(element, vr, text):
    value = text.encode("ascii")
    if len(value) % 2:
        value += b"\0" if vr == "UI" else b" "
    return struct.pack("<HH2sH", 0x0002, element, vr.encode("ascii"), len(value)) + value


_META_VERSION = struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01"
_META_IMPLEMENTATION = (_meta_element(0x0012, "UI", PYNETDICOM_IMPLEMENTATION_UID)
                        + _meta_element(0x0013, "SH", PYNETDICOM_IMPLEMENTATION_VERSION))


def handle_store(event, policy):
    if not allowed(event, policy, "store"):
        return NOT_AUTHORIZED
    aet, address = peer(event)
    origin = ingest.Origin.dicom(aet, address, called_aet=event.assoc.acceptor.ae_title.strip(), audited=True)
    try:
        # The bytes as received, with the file meta pynetdicom builds from the
        # presentation context: parsed once, by the ingest path.
        ingest.store(part10(event), origin)
    except ingest.RejectedInstance as error:
        log.warning("C-STORE from %s refused: %s", aet, error)
        audit.record("ae", aet, "store", address=address, method="C-STORE", status=CANNOT_UNDERSTAND,
                     details={"refused": str(error)[:500]})
        return _status(CANNOT_UNDERSTAND, str(error))
    except (DatabaseBusy, StorageError) as error:
        log.error("C-STORE from %s failed: %s", aet, error)
        return _status(OUT_OF_RESOURCES, str(error))
    # The store's audit row was written with the instance (Origin `audited`).
    return SUCCESS


def _wait_until_sent(assoc, limit=1.0):
    """Wait (at most `limit` seconds) until the association has sent what is queued.

    pynetdicom's connection thread reads the socket only when it has nothing left
    to send: answers queued faster than they leave would keep a C-CANCEL unread
    until the last one is sent. Queuing the next answer only once the previous
    one is out lets the cancel in between any two."""
    outgoing = assoc.dul.to_provider_queue
    deadline = time.monotonic() + limit
    while not outgoing.empty() and time.monotonic() < deadline:
        time.sleep(0.0001)


def handle_find(event, policy, options):
    if not allowed(event, policy, "find"):
        yield NOT_AUTHORIZED, None
        return
    if event.request.AffectedSOPClassUID == WORKLIST_FIND:
        yield from _find_worklist(event, options)
        return
    identifier = event.identifier
    try:
        level, criteria, keys = _parse_identifier(identifier, event.request.AffectedSOPClassUID)
    except ValueError as error:
        yield _status(IDENTIFIER_DOES_NOT_MATCH, str(error)), None
        return
    limit = options.max_find_answers or None
    aet, address = peer(event)
    audit.record("ae", aet, "query", address=address, method="C-FIND", level=level,
                 details={"query": {k: str(v)[:200] for k, v in list(criteria.items())[:20]}})
    try:
        matches, more = query.find(query.Query(level=level, criteria=criteria, limit=limit),
                                   return_keys=keys + list(UNIQUE_KEYS[level]))
    except query.InvalidQuery as error:
        yield _status(IDENTIFIER_DOES_NOT_MATCH, str(error)), None
        return
    encoder = _encoder(identifier, level, options)

    def answer(match, explicit_vr):
        by_hand = None
        if encoder is not None and explicit_vr is not None:
            by_hand = encoder(explicit_vr).encode(match.values)
        # Not plain text (or keys the encoder does not know): a Dataset, encoded by pydicom.
        return by_hand if by_hand is not None else _answer(identifier, level, match, options)

    if (yield from _send(event, matches, answer)):
        return
    if more:
        # More matches than PACS_DICOM_MAX_FIND_ANSWERS: say so instead of
        # letting the SCU believe it saw everything.
        yield _status(OUT_OF_RESOURCES, f"more than {limit} matches; refine the query"), None


def _send(event, items, answer):
    """The pending C-FIND responses, `answer(item, explicit_vr)` for each item (the
    identifier's bytes, or a Dataset; a Dataset when explicit_vr is None): written to
    the socket by dicom/answers.py, or sent by pynetdicom for the syntaxes and sockets
    it does not write. True when the query ended early (cancelled, failed, the
    association gone), its final status yielded if there is one to give."""
    responder = answers.Responder.open(event)
    if responder is None:
        return (yield from _send_through_pynetdicom(event, (answer(item, None) for item in items)))
    return (yield from _send_directly(event, responder, (answer(item, responder.explicit_vr) for item in items)))


def _send_directly(event, responder, identifiers):
    """Write a pending response per identifier (bytes, or a Dataset encoded here);
    True when the query ended early (cancelled, failed, the association gone), its
    final status yielded if there is one to give."""
    for identifier in identifiers:
        responder.pace()
        if responder.peer_spoke():
            responder.let_read()
        if event.is_cancelled:
            responder.flush()
            yield CANCEL, None
            return True
        if responder.failed or not event.assoc.is_established:
            return True
        if not isinstance(identifier, bytes):
            identifier = encode(identifier, not responder.explicit_vr, True)
            if identifier is None:
                responder.flush()
                yield UNABLE_TO_ENCODE, None
                return True
        responder.send(identifier)
    return not responder.flush()


def _send_through_pynetdicom(event, datasets):
    """Pending responses sent by pynetdicom, each queued once the previous one has
    left (its connection thread reads a C-CANCEL only when it has nothing to send).
    True when cancelled."""
    for dataset in datasets:
        _wait_until_sent(event.assoc)
        if event.is_cancelled:
            yield CANCEL, None
            return True
        yield PENDING, dataset
    return False


def _encoder(identifier, level, options):
    """What _answer builds, as bytes: a function of the transfer syntax (explicit VR
    or not) giving a dicom/answers.py Identifier; None when a key is one it does not
    write."""
    keys = _answer_keys(identifier)
    fixed = {"SpecificCharacterSet": "ISO_IR 192",
             "QueryRetrieveLevel": _text_of(identifier.data_element("QueryRetrieveLevel"))}
    if "RetrieveAETitle" in keys:
        fixed["RetrieveAETitle"] = options.ae_title
    sequences = [e.keyword for e in identifier if e.keyword in keys and e.VR == "SQ"]
    wanted = [k for k in list(UNIQUE_KEYS[level]) + keys if k not in fixed and k not in sequences]
    try:
        encoders = {explicit_vr: answers.Identifier(fixed, wanted, sequences, explicit_vr)
                    for explicit_vr in (False, True)}
    except ValueError:
        return None
    return encoders.__getitem__


def _find_worklist(event, options):
    """Modality Worklist C-FIND (PS3.4 K.6.1.2): the matching keys are those of the
    identifier and of its Scheduled Procedure Step Sequence item; each answer holds
    the keys asked for, at the level they were asked."""
    identifier = event.identifier
    if identifier is None:
        yield _status(IDENTIFIER_DOES_NOT_MATCH, "the request has no identifier"), None
        return
    criteria = _worklist_criteria(identifier)
    limit = options.max_find_answers or None
    aet, address = peer(event)
    audit.record("ae", aet, "query", address=address, method="C-FIND", level="Worklist",
                 details={"query": {k: str(v)[:200] for k, v in list(criteria.items())[:20]}})
    try:
        items, more = worklist.find(criteria, limit=limit)
    except query.InvalidQuery as error:
        yield _status(IDENTIFIER_DOES_NOT_MATCH, str(error)), None
        return
    if (yield from _send(event, items, lambda item, _: _worklist_answer(identifier, worklist.dataset(item)))):
        return
    if more:
        yield _status(OUT_OF_RESOURCES, f"more than {limit} matches; refine the query"), None


def _worklist_criteria(identifier):
    criteria = {}
    for element in identifier:
        if element.keyword == "ScheduledProcedureStepSequence" and element.value:
            for inner in element.value[0]:
                if inner.keyword and inner.VR != "SQ":
                    criteria[inner.keyword] = _text_of(inner)
        elif element.keyword and element.VR != "SQ" and element.keyword != "SpecificCharacterSet":
            criteria[element.keyword] = _text_of(element)
    return criteria


def _worklist_answer(identifier, item):
    """The keys the identifier asks for, with the item's values (zero length where it
    has none: PS3.4 C.4.1.1.3.2); in the character set of the item's dataset."""
    answer = _asked(identifier, item)
    answer.SpecificCharacterSet = item.SpecificCharacterSet
    return answer


def _asked(asked, item):
    answer = Dataset()
    for element in asked:
        if element.keyword == "SpecificCharacterSet":
            continue
        have = item[element.tag] if element.tag in item else None
        if element.VR == "SQ":
            # A sequence asked with an empty item (or none) is asked whole
            # (universal matching of its items, PS3.4 C.2.2.2.6).
            inner = element.value[0] if element.value else None
            items = have.value if have is not None and have.VR == "SQ" else []
            answer[element.tag] = DataElement(element.tag, "SQ", [
                _asked(inner, one) if inner is not None and len(inner) else copy.deepcopy(one) for one in items])
        elif have is not None:
            answer[element.tag] = copy.deepcopy(have)
        else:
            answer[element.tag] = DataElement(element.tag, element.VR, None)
    return answer


def handle_move(event, policy):
    if not allowed(event, policy, "move"):
        # pynetdicom opens the sub-association before any status can be sent, so
        # the only refusal it can give first is 0xA801 (move destination unknown).
        yield None, None
        return
    destination = policy.destination(event.move_destination.decode().strip()
                                     if isinstance(event.move_destination, bytes)
                                     else str(event.move_destination).strip())
    if destination is None:
        log.warning("C-MOVE to unknown destination %r", event.move_destination)
        yield None, None
        return
    files = _files_for(event.identifier, event.request.AffectedSOPClassUID)
    _audit_export(event, "C-MOVE", files, destination=str(event.move_destination).strip())
    contexts = _contexts_for(files)
    # pynetdicom opens the sub-association itself; its established event hands
    # it over, so each instance can be sent in a syntax the destination accepted.
    opened = {}
    handlers = [(evt.EVT_ESTABLISHED, lambda sub_event: opened.setdefault("assoc", sub_event.assoc))]
    yield destination[0], destination[1], {"contexts": contexts, "evt_handlers": handlers}
    yield from _sub_operations(event, files, lambda: opened.get("assoc"))


def handle_get(event, policy):
    if not allowed(event, policy, "get"):
        # A count first, as pynetdicom requires, then the refusal as final status.
        yield 1
        yield NOT_AUTHORIZED, None
        return
    files = _files_for(event.identifier, event.request.AffectedSOPClassUID)
    _audit_export(event, "C-GET", files)
    yield from _sub_operations(event, files, lambda: event.assoc)


def _audit_export(event, what, files, **details):
    aet, address = peer(event)
    keys = {elem.keyword: str(elem.value)[:200] for elem in event.identifier if elem.keyword}
    count = files if isinstance(files, int) else len(files)
    audit.record("ae", aet, "export", address=address, method=what,
                 details=dict(details, identifier=keys, instances=count))


def _sub_operations(event, files, sending):
    """The C-STORE sub-operations; `sending()` is the association they go on, once open.

    An instance is sent as stored when the peer accepted its syntax, and
    transcoded (decompressed first) when it accepted only others, as Orthanc does.
    """
    if isinstance(files, int):
        yield 0
        yield files, None
        return
    yield len(files)
    storage = get_storage()
    for key, sop_class, syntax in files:
        if event.is_cancelled:
            yield CANCEL, None
            return
        assoc = sending()
        try:
            with storage.open(key) as stream:
                if assoc is None:
                    dataset = pydicom.dcmread(stream)
                else:
                    dataset = dimse.dataset_to_send(stream, syntax, dimse.accepted_syntaxes(assoc, sop_class))
        except TranscodeError as error:
            # Sent as stored, the sub-operation fails (no presentation context)
            # and is counted as failed; the others go on.
            log.warning("instance %s cannot be sent in a syntax %s accepted: %s", key,
                        assoc.acceptor.ae_title.strip(), error)
            with storage.open(key) as stream:
                dataset = pydicom.dcmread(stream)
        except (StorageError, OSError, pydicom.errors.InvalidDicomError) as error:
            log.error("cannot read stored file %s for a retrieve: %s", key, error)
            yield UNABLE_TO_PROCESS, None
            continue
        yield PENDING, dataset


def _files_for(identifier, sop_class_uid):
    """(storage key, SOP Class UID, transfer syntax) of every instance the identifier selects."""
    try:
        level, criteria, _ = _parse_identifier(identifier, sop_class_uid)
    except ValueError:
        return IDENTIFIER_DOES_NOT_MATCH
    # A retrieve names resources by their unique keys (PS3.4 C.4.2.2.1); other
    # keys do not select.
    selectors = {k: v for k, v in criteria.items() if k in UNIQUE_KEYS[level] and v}
    if not selectors:
        return IDENTIFIER_DOES_NOT_MATCH
    matches, _ = query.find(query.Query(level=level, criteria=selectors))
    if not matches:
        return []
    ids = [m.row.pk for m in matches]
    parent = {Level.PATIENT: "series__study__patient_id__in", Level.STUDY: "series__study_id__in",
              Level.SERIES: "series_id__in", Level.INSTANCE: "pk__in"}[level]
    instances = dict(
        (public_id, (sop_class, syntax))
        for public_id, sop_class, syntax in Instance.objects.filter(**{parent: ids})
        .order_by("series_id", "instance_number", "pk")
        .values_list("public_id", "sop_class_uid", "transfer_syntax_uid")
    )
    if len(instances) > MAX_SUBOPERATIONS:
        return OUT_OF_RESOURCES
    keys = Attachment.objects.filter(resource_id__in=list(instances), name=Attachment.DICOM).values_list(
        "resource_id", "storage_key"
    )
    return [(key, *instances[public_id]) for public_id, key in keys]


def _contexts_for(files):
    """Presentation contexts for the sub-association: one per (SOP class, stored syntax), and uncompressed ones."""
    from pynetdicom.presentation import build_context

    if isinstance(files, int):
        return None
    pairs = ((sop_class, syntax) for _, sop_class, syntax in files)
    return [build_context(sop_class, syntaxes) for sop_class, syntaxes in dimse.storage_contexts(pairs)]


def _parse_identifier(identifier, sop_class_uid):
    if identifier is None or "QueryRetrieveLevel" not in identifier:
        raise ValueError("the identifier has no QueryRetrieveLevel (0008,0052)")
    level_name = str(identifier.QueryRetrieveLevel).strip().upper()
    if level_name not in LEVELS:
        raise ValueError(f"unknown QueryRetrieveLevel {level_name!r}")
    level = LEVELS[level_name]
    if level == Level.PATIENT and str(sop_class_uid).startswith(STUDY_ROOT_PREFIX):
        raise ValueError("a Study Root query has no PATIENT level")
    criteria, keys = {}, []
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in ("QueryRetrieveLevel", "SpecificCharacterSet") or element.VR == "SQ":
            continue
        keys.append(keyword)
        criteria[keyword] = _text_of(element)
    return level, criteria, keys


def _text_of(element):
    """A matching key's value as the DICOM matching string it was sent as."""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _answer(identifier, level, match, options):
    answer = Dataset()
    answer.SpecificCharacterSet = "ISO_IR 192"
    answer.QueryRetrieveLevel = identifier.QueryRetrieveLevel
    keys = _answer_keys(identifier)
    for keyword in list(UNIQUE_KEYS[level]) + keys:
        if keyword in answer:
            continue
        element = identifier.data_element(keyword) if keyword in identifier else None
        if element is not None and element.VR == "SQ":
            setattr(answer, keyword, [])
            continue
        _set(answer, keyword, match.values.get(keyword))
    if "RetrieveAETitle" in keys:
        answer.RetrieveAETitle = options.ae_title
    return answer


def _answer_keys(identifier):
    return [e.keyword for e in identifier if e.keyword and e.keyword not in ("QueryRetrieveLevel", "SpecificCharacterSet")]


def _set(dataset, keyword, text):
    from pydicom.datadict import dictionary_VR

    try:
        vr = dictionary_VR(keyword)
    except KeyError:
        return
    if text in (None, ""):
        # Zero length: what a return key without a value is (PS3.4 C.4.1.1.3.2).
        setattr(dataset, keyword, "" if vr in TEXT_VRS else None)
        return
    try:
        setattr(dataset, keyword, text)
    except (ValueError, TypeError):
        setattr(dataset, keyword, None)


# Every association runs its handlers in its own thread, with that thread's own
# Django connection. Give it back (to the pool) when each request is answered:
# pynetdicom's connection-closed event fires in another thread, and a connection
# kept per association would exhaust the pool after PACS_DB_POOL_SIZE of them.
# SQLite has no pool: closing it would open a new connection for every C-STORE
# (a fifth of its CPU); the association's thread keeps its connection until the
# association is released or aborted (close_connection), or, should it end
# otherwise, until the thread's state is collected.


def _release():
    if connection.vendor != "sqlite":
        connection.close()


def close_connection(event):
    connection.close()


def releasing(handler):
    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        finally:
            _release()

    return wrapper


def releasing_generator(handler):
    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            yield from handler(*args, **kwargs)
        finally:
            _release()

    return wrapper


def log_association(event, what):
    aet, address = peer(event)
    log.info("association %s: %s at %s", what, aet, address)


# Larger than any A-ASSOCIATE-RQ (a few KB even with every storage class proposed):
# a first PDU announcing more is not an association request worth waiting for.
MAX_ASSOCIATE_RQ = 64 * 1024


def _await_whole_pdu(sock, timeout):
    """Whether the first PDU (6-byte header, then its announced length) is wholly in
    the socket's receive buffer within `timeout` seconds; read with MSG_PEEK, so
    pynetdicom reads it afterwards as if nothing happened. A peer that closes, or
    announces more than MAX_ASSOCIATE_RQ, is not waited for: pynetdicom answers it."""
    import select

    deadline = time.monotonic() + timeout
    wanted = 6
    while True:
        try:
            available = sock.recv(MAX_ASSOCIATE_RQ + 6, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            available = None
        except OSError:
            return True  # broken: let pynetdicom see it and end the association
        if available is not None:
            if not available:
                return True  # closed by the peer
            if len(available) >= 6:
                wanted = 6 + int.from_bytes(available[2:6], "big")
                if wanted > MAX_ASSOCIATE_RQ + 6:
                    return True
            if len(available) >= wanted:
                return True
        left = deadline - time.monotonic()
        if left <= 0 or (available and _peer_closed(sock)):
            return False
        # Readable means "more than last time" only when new bytes came: wait a
        # little between peeks rather than spin on data already seen.
        select.select([sock], [], [], min(left, 0.05 if available else left))
        if available:
            time.sleep(min(max(0.0, deadline - time.monotonic()), 0.05))


def _peer_closed(sock):
    """Whether the peer closed its side while unread bytes are still buffered (a peek
    sees the bytes, not the end): TCP state CLOSE_WAIT, from Linux's TCP_INFO."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 8
    except (OSError, AttributeError):
        return False


class SharedContexts(list):
    """The listener's supported presentation contexts, copied cheaply per association.

    pynetdicom deep-copies the supported contexts for every association it
    accepts; with every storage class in every transfer syntax (170 × 45 UIDs)
    that copy alone costs ~80 ms, more than the rest of an echo. Negotiation only
    reads them, so a copy of each context and of its syntax list is enough.
    """

    def __deepcopy__(self, memo):
        copies = []
        for context in self:
            duplicate = copy.copy(context)
            duplicate._transfer_syntax = list(context._transfer_syntax)
            copies.append(duplicate)
        return copies


class _RequestHandler(RequestHandler):
    """pynetdicom's, with associations that wait for their work (dicom/reactor.py)
    and answer plain C-STOREs with bytes written here."""

    def _create_association(self):
        assoc = super()._create_association()
        reactor.wait_for_work(assoc)
        read_stores_directly(assoc)
        answer_stores_directly(assoc)
        return assoc


def read_stores_directly(assoc):
    """Read the command set of the association's plain C-STORE requests here.

    pynetdicom decodes every command set with pydicom's reader into a Dataset, then
    copies it element by element into the request primitive: ~0.14 ms, a tenth of
    the listener's CPU for a small instance. A C-STORE-RQ whose command set comes
    whole in a P-DATA of its own, holds only the elements PS3.7 §9.3.1.1 defines,
    each well formed, with a data set to follow, on an association where nothing
    listens to EVT_DIMSE_RECV (pynetdicom's logging does when the DICOM log level is
    INFO or DEBUG), is read here into the same primitive, through the same setters
    (which validate as before); anything else is pynetdicom's. A test compares the
    primitives."""
    provider = assoc.dimse
    receive = provider.receive_primitive

    def receive_primitive(primitive):
        message = provider.message
        if message is None:
            request = None if assoc.get_handlers(evt.EVT_DIMSE_RECV) or _config.STORE_RECV_CHUNKED_DATASET \
                else _store_request(primitive)
            if request is None:
                return receive(primitive)
            # As pynetdicom makes it: C_STORE_RQ() would build a command set of its own to fill.
            message = provider.message = DIMSEMessage()
            message.__class__ = C_STORE_RQ
            message.context_id, message.direct = request
            message.encoded_command_set.write(primitive.presentation_data_value_list[0][1][1:])
            return None
        if getattr(message, "direct", None) is None:
            return receive(primitive)
        if any(data and data[0] & 1 for _, data in primitive.presentation_data_value_list):
            # A command fragment before the data set's last: pynetdicom's state, and its reading.
            message.command_set = decode(message.encoded_command_set, True, True)
            message.direct = None
            return receive(primitive)
        if message.decode_msg(primitive, assoc):
            request = message.direct
            request.DataSet = message.data_set
            provider.message = None
            provider.msg_queue.put((message.context_id, request))
        return None

    provider.receive_primitive = receive_primitive


# The elements of a C-STORE-RQ's command set (PS3.7 Table 9.3-1) and how each is encoded.
_STORE_REQUEST = {0x0000: "UL", 0x0002: "UI", 0x0100: "US", 0x0110: "US", 0x0700: "US", 0x0800: "US",
                  0x1000: "UI", 0x1030: "AE", 0x1031: "US"}
_STORE_REQUIRED = frozenset({0x0002, 0x0100, 0x0110, 0x0700, 0x0800, 0x1000})
_C_STORE_RQ = 0x0001
_NO_DATA_SET = 0x0101


def _store_request(pdata):
    """(presentation context ID, the C_STORE request primitive without its data set)
    of a P-DATA that is a whole plain C-STORE-RQ command set; None for anything else."""
    values = pdata.presentation_data_value_list
    if len(values) != 1:
        return None
    context_id, data = values[0]
    if not data or data[0] & 3 != 3:  # not the last (here only) fragment of a command set
        return None
    elements, offset, end = {}, 1, len(data)
    while offset < end:
        if offset + 8 > end:
            return None
        group, element, length = struct.unpack_from("<HHI", data, offset)
        offset += 8
        vr = _STORE_REQUEST.get(element) if group == 0 else None
        if vr is None or element in elements or offset + length > end:
            return None
        value = data[offset:offset + length]
        offset += length
        if vr in ("US", "UL"):
            if length != (2 if vr == "US" else 4):
                return None
            elements[element] = int.from_bytes(value, "little")
        else:
            if not length or not value.isascii():
                return None
            text = value.decode("ascii")
            text = text.rstrip("\0") if vr == "UI" else text.strip()
            if not text or any(c in text for c in "\\\0 "):
                return None
            elements[element] = text
    if not _STORE_REQUIRED <= elements.keys() or elements[0x0100] != _C_STORE_RQ \
            or elements[0x0800] == _NO_DATA_SET:
        return None
    request = C_STORE()
    try:
        request.MessageID = elements[0x0110]
        request.AffectedSOPClassUID = elements[0x0002]
        request.AffectedSOPInstanceUID = elements[0x1000]
        request.Priority = elements[0x0700]
        if 0x1030 in elements:
            request.MoveOriginatorApplicationEntityTitle = elements[0x1030]
        if 0x1031 in elements:
            request.MoveOriginatorMessageID = elements[0x1031]
    except (ValueError, TypeError):
        return None
    request._context_id = context_id
    return context_id, request


def answer_stores_directly(assoc):
    """Send the association's plain C-STORE responses as bytes written here.

    pynetdicom builds each response's command set as a pydicom Dataset and writes
    it with pydicom's writer, and fires EVT_DIMSE_SENT, whose only handler here
    (pynetdicom's logging) logs nothing for a C-STORE-RSP: a sixth of the
    listener's CPU for a small instance. A response with an error comment or an
    offending element, one too large for a single PDV, and every other message
    are pynetdicom's as before; the bytes are the same (a test compares)."""
    provider = assoc.dimse
    send = provider.send_msg

    def send_msg(primitive, context_id):
        command_set = store_response(primitive)
        maximum = provider.maximum_pdu_size
        if command_set is None or (maximum and len(command_set) > maximum - 6) \
                or not _only_standard_handlers(assoc, evt.EVT_DIMSE_SENT):
            return send(primitive, context_id)
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, b"\x03" + command_set))  # the last (only) command fragment
        assoc.dul.send_pdu(pdata)

    provider.send_msg = send_msg


def store_response(primitive):
    """The command set of a C-STORE response primitive (implicit VR little endian,
    PS3.7 §6.3.1, E.1), or None when it is not a plain one."""
    if type(primitive) is not C_STORE or primitive.MessageIDBeingRespondedTo is None \
            or primitive.ErrorComment is not None or primitive.OffendingElement is not None \
            or getattr(primitive, "_dataset_path", None) or primitive.Status is None:
        return None
    elements = []
    for element, uid in ((0x0002, primitive.AffectedSOPClassUID), (0x1000, primitive.AffectedSOPInstanceUID)):
        if uid is not None:
            if not ingest.UID_PATTERN.fullmatch(str(uid)):
                return None
            value = str(uid).encode("ascii")
            elements.append((element, value + b"\0" if len(value) % 2 else value))
    elements += [(0x0100, b"\x01\x80"), (0x0120, struct.pack("<H", primitive.MessageIDBeingRespondedTo)),
                 (0x0800, b"\x01\x01"), (0x0900, struct.pack("<H", primitive.Status))]
    body = b"".join(struct.pack("<HHI", 0x0000, element, len(value)) + value for element, value in sorted(elements))
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body


def _only_standard_handlers(assoc, event):
    return all(handler is standard_dimse_sent_handler for handler, _ in assoc.get_handlers(event))


class NoDelayServer(ThreadedAssociationServer):
    """Answers without Nagle's delay: a C-STORE response waits for no ACK."""

    # socketserver's backlog of 5 drops the connections of real modalities while a
    # flood of association requests is being accepted and refused.
    request_queue_size = 128

    def __init__(self, *args, **kwargs):
        import threading

        kwargs.setdefault("request_handler", _RequestHandler)
        self._half_open = {}  # address -> connections whose A-ASSOCIATE-RQ has not arrived whole
        self._half_open_lock = threading.Lock()
        super().__init__(*args, **kwargs)
        self.contexts = SharedContexts(self.contexts)

    def server_bind(self):
        # Several listener processes of a node share the port: the kernel spreads
        # associations over them, so a node stores on every core, not on one GIL.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    # --- association requests that trickle -----------------------------------
    # pynetdicom gives every connection a thread and an association slot at once,
    # and reads the A-ASSOCIATE-RQ with blocking reads: 140 connections sending it
    # a byte every 10 s took every slot (PACS_DICOM_MAX_ASSOCIATIONS) and every
    # association was refused for 100 s. Here a connection is "half-open" until
    # its whole A-ASSOCIATE-RQ is in the socket's buffer (peeked, not read): it
    # must get there within PACS_DICOM_ASSOCIATE_TIMEOUT seconds, and at most
    # PACS_DICOM_HALF_OPEN_PER_ADDRESS of them per address (PACS_DICOM_HALF_OPEN_MAX
    # in all) wait at a time; beyond, the connection is closed at once. Only then
    # does pynetdicom see it. Behind HAProxy, the balancer does the same first
    # (cluster/balancer.py), so trickled requests never reach a node.

    def process_request(self, request, client_address):
        from django.conf import settings

        address = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        with self._half_open_lock:
            total = sum(self._half_open.values())
            if (self._half_open.get(address, 0) >= settings.DICOM_HALF_OPEN_PER_ADDRESS
                    or total >= settings.DICOM_HALF_OPEN_MAX):
                refused = True
            else:
                refused = False
                self._half_open[address] = self._half_open.get(address, 0) + 1
        if refused:
            log.warning("association request from %s refused: too many half-open associations "
                        "(PACS_DICOM_HALF_OPEN_PER_ADDRESS / PACS_DICOM_HALF_OPEN_MAX)", address)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        from django.conf import settings

        address = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        try:
            complete = _await_whole_pdu(request, settings.DICOM_ASSOCIATE_TIMEOUT)
        finally:
            with self._half_open_lock:
                self._half_open[address] -= 1
                if not self._half_open[address]:
                    del self._half_open[address]
        if not complete:
            log.warning("association request from %s did not arrive whole within %s s "
                        "(PACS_DICOM_ASSOCIATE_TIMEOUT): closed", address, settings.DICOM_ASSOCIATE_TIMEOUT)
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)

    def get_request(self):
        client, address = super().get_request()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # pynetdicom reads a PDU to its announced end with blocking reads: a peer
        # that stops in the middle of one (a cut-short A-ASSOCIATE-RQ, a flood of
        # them) would hold its thread and an association slot for ever. With a
        # timeout the read fails after PACS_DICOM_TIMEOUT seconds of silence and
        # the association ends; between PDUs pynetdicom waits with select, which
        # the timeout does not touch, so an idle association is not cut.
        if self.ae.network_timeout is not None:
            client.settimeout(self.ae.network_timeout)
        return client, address
