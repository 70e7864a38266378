"""What the listener and the SCU share of DIMSE: status codes, status datasets,
the storage commitment report, the storage classes and the presentation contexts
of a send, and sockets that do not wait for Nagle's algorithm."""

import io
import logging
import socket
import threading

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, UID_dictionary
from pynetdicom import _config as pynetdicom_config
from pynetdicom.presentation import AllStoragePresentationContexts, StoragePresentationContexts
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import register_uid, uid_to_service_class
from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket

from archive import transcode
from archive.errors import TranscodeError

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
NOT_AUTHORIZED = 0x0124  # PS3.7 C.5.x, valid for every DIMSE service
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
IDENTIFIER_DOES_NOT_MATCH = 0xA900
MOVE_DESTINATION_UNKNOWN = 0xA801
UNABLE_TO_PROCESS = 0xC001

# Storage Commitment Push Model (PS3.4 J.3): its SOP class, the well-known
# instance every request and report names (J.3.5), and the action and the
# events of its N-ACTION and N-EVENT-REPORT (J.3.2.1.1, J.3.3.1.1).
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
REQUEST_COMMITMENT = 1
ALL_COMMITTED = 1
FAILURES_EXIST = 2


# What a peer that takes no compressed syntax gets (PS3.5 §10.1: Implicit VR
# Little Endian is the one every AE must accept).
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# An association carries at most 128 presentation contexts (PS3.8 §9.3.2.2).
MAX_CONTEXTS = 128


def log_handlers_as_logged():
    """Bind pynetdicom's own logging handlers to the associations made from now on
    only when its logger lets INFO through (PACS_DICOM_LOG_LEVEL): they format every
    PDU and DIMSE message for that log, a tenth of a small C-STORE's CPU, whether
    the log keeps the lines or drops them."""
    verbose = logging.getLogger("pynetdicom").isEnabledFor(logging.INFO)
    pynetdicom_config.LOG_HANDLER_LEVEL = "standard" if verbose else "none"


def _storage_classes():
    current = {context.abstract_syntax for context in AllStoragePresentationContexts}
    # pynetdicom's selection adds retired classes still in use (the retired US
    # Image Storage 1.2.840.10008.5.1.4.1.1.6, NM, VL...); pydicom's dictionary
    # names every retired storage class of the standard.
    retired = {context.abstract_syntax for context in StoragePresentationContexts} - current
    retired |= {uid for uid, (name, kind, _, retired_flag, _) in UID_dictionary.items()
                if kind == "SOP Class" and retired_flag == "Retired" and " Storage" in name
                and "Commitment" not in name}
    retired -= current
    return sorted(current), sorted(retired)


# Every storage SOP class of the current standard, and the retired ones (PS3.4 B.5,
# PS3.6 Table A-1 "(Retired)"), which a listener accepts unless told otherwise.
CURRENT_STORAGE_CLASSES, RETIRED_STORAGE_CLASSES = _storage_classes()


def _register_retired_classes():
    # pynetdicom answers a C-STORE only for classes bound to its Storage service
    # class; the retired ones it does not know would get "no supported service
    # class" and a failure status, as well on a C-MOVE sub-operation we send.
    for uid in RETIRED_STORAGE_CLASSES:
        if uid_to_service_class(uid) is StorageServiceClass:
            continue
        keyword = UID_dictionary[uid][4] or f"RetiredStorage_{uid.replace('.', '_')}"
        register_uid(uid, keyword, StorageServiceClass)


_register_retired_classes()


def storage_classes(setting):
    """The storage SOP classes a listener accepts, from PACS_DICOM_STORAGE_CLASSES."""
    setting = (setting or "all").strip()
    if setting == "all":
        return CURRENT_STORAGE_CLASSES + RETIRED_STORAGE_CLASSES
    if setting == "current":
        return list(CURRENT_STORAGE_CLASSES)
    classes = [item.strip() for item in setting.split(",") if item.strip()]
    invalid = [item for item in classes if not all(part.isdigit() for part in item.split("."))]
    if invalid or not classes:
        raise ValueError(f"expected all, current or SOP Class UIDs separated by commas, not {setting!r}")
    return classes


def storage_contexts(instances):
    """[(SOP class, [transfer syntaxes])] to propose for sending (SOP class, stored syntax) pairs.

    One context per pair, so that a peer accepting Explicit VR Little Endian for
    a class can still accept JPEG 2000 in another context of the same class
    (one context with every syntax gets one syntax accepted, and nothing is left
    for the others); plus an uncompressed context per class, so that an instance
    whose syntax is refused can be sent decompressed (what Orthanc does).
    """
    classes, pairs = [], []
    for sop_class, syntax in instances:
        if sop_class not in classes:
            classes.append(sop_class)
        if syntax not in UNCOMPRESSED and (sop_class, syntax) not in pairs:
            pairs.append((sop_class, syntax))
    # The fallbacks first: past 128 contexts an instance may go decompressed,
    # but a class without any context could not go at all.
    contexts = [(sop_class, list(UNCOMPRESSED)) for sop_class in classes]
    contexts += [(sop_class, [syntax]) for sop_class, syntax in pairs]
    return contexts[:MAX_CONTEXTS]


def accepted_syntaxes(assoc, sop_class):
    """The transfer syntaxes the peer accepted for a SOP class on an association."""
    return [context.transfer_syntax[0] for context in assoc.accepted_contexts
            if context.abstract_syntax == sop_class]


def dataset_to_send(stream, stored_syntax, accepted):
    """The stored file (open `stream`) as the dataset to C-STORE to a peer that accepted `accepted` for its class.

    What is stored goes as stored when the peer takes it (pynetdicom re-encodes
    between uncompressed syntaxes); otherwise it is transcoded to an accepted
    syntax, uncompressed first, never lossy. Raises TranscodeError when the peer
    accepts nothing that can be produced.
    """
    stored = UID(stored_syntax)
    if stored in accepted or (not stored.is_compressed and any(not UID(s).is_compressed for s in accepted)):
        return pydicom.dcmread(stream)
    candidates = [s for s in UNCOMPRESSED if s in accepted] + [s for s in accepted if s in transcode.LOSSLESS]
    for target in candidates:
        if transcode.can_transcode(stored, target):
            stream.seek(0)
            return pydicom.dcmread(io.BytesIO(transcode.transcoded_bytes(stream, target)))
    raise TranscodeError(f"the peer accepts {', '.join(map(str, accepted)) or 'no syntax'} for this class, and "
                         f"the instance, stored in {stored.name or stored}, cannot be converted to any of them")


def status(code, comment):
    """A status dataset with its comment (PS3.7 C.4: at most 64 characters)."""
    answer = Dataset()
    answer.Status = code
    answer.ErrorComment = comment[:64]
    return answer


def commitment_report(outcome, retrieve_aet=""):
    """The Event Information of a Storage Commitment Result (PS3.4 J.3.3.1.1) for a
    commitment.Outcome: every referenced instance, in the Referenced SOP Sequence
    when committed, in the Failed SOP Sequence with its Failure Reason when not."""
    report = Dataset()
    report.TransactionUID = outcome.transaction_uid
    if retrieve_aet:
        report.RetrieveAETitle = retrieve_aet
    if outcome.committed:
        report.ReferencedSOPSequence = [reference(ref["ReferencedSOPClassUID"], ref["ReferencedSOPInstanceUID"])
                                        for ref in outcome.committed]
    if outcome.failed:
        report.FailedSOPSequence = [reference(ref["ReferencedSOPClassUID"], ref["ReferencedSOPInstanceUID"],
                                              FailureReason=ref["FailureReason"]) for ref in outcome.failed]
    return report


def reference(sop_class_uid, sop_instance_uid, **extra):
    """An item of a Referenced SOP Sequence (or of a Failed SOP Sequence, with FailureReason)."""
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    for keyword, value in extra.items():
        setattr(item, keyword, value)
    return item


_create_socket = AssociationSocket._create_socket


def _create_nodelay_socket(self, address):
    # pynetdicom leaves Nagle's algorithm on for the associations we open (C-MOVE
    # sub-operations, sends): small PDUs would wait ~40 ms for the peer's ACK.
    sock = _create_socket(self, address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


AssociationSocket._create_socket = _create_nodelay_socket


class ReactorCheckpoint(threading.Event):
    """pynetdicom's pause of an association's reactor, without its race.

    A send_*() clears the checkpoint, waits until the reactor says it is paused,
    then sends and takes the answer off the queue. The reactor says "paused",
    waits on the checkpoint, then says "running": preempted between the wait and
    that word, it looked paused to a send that had just cleared the checkpoint,
    and took the send's answer off the queue as an unexpected message (the send
    then waited its whole DIMSE timeout). Against a peer that answers within a
    millisecond this happened. Here the wait says "running" itself, under the
    lock that clear() takes: a send sees either a reactor that will stop at the
    checkpoint, or one already past it that it waits for."""

    def __init__(self, assoc):
        super().__init__()
        self._assoc = assoc
        self.set()

    def wait(self, timeout=None):
        with self._cond:
            passed = self._cond.wait_for(lambda: self._flag, timeout)
            if passed:
                self._assoc._is_paused = False
            return passed


_association_init = Association.__init__


def _init_with_checkpoint(self, *args, **kwargs):
    _association_init(self, *args, **kwargs)
    self._reactor_checkpoint = ReactorCheckpoint(self)


Association.__init__ = _init_with_checkpoint
