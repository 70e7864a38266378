"""What the listener and the SCU share of DIMSE: status codes, status datasets,
the storage commitment report, and sockets that do not wait for Nagle's algorithm."""

import socket

from pydicom.dataset import Dataset
from pynetdicom.transport import AssociationSocket

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

