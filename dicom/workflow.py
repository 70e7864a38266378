"""MPPS and Storage Commitment SCP: DICOM in, archive calls out.

As dicom/scp.py does for the C- services, a handler here translates: the N-CREATE
and N-SET of a Modality Performed Procedure Step (PS3.4 F.7) become calls of
archive.mpps, a Storage Commitment N-ACTION (PS3.4 J.3) a call of
archive.commitment, and the archive's errors become DIMSE-N statuses. The
listener adds only the delivery of the Storage Commitment Result: on the
requester's association while it is open, else on a new association to the
requester's AE title as the modality table knows it (J.3.3.1.2: the SCP shall be
able to use another association; the requester may release at any time).
"""

import io
import logging
import queue
import threading
import time

from django.conf import settings
from django.db import connection
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.dimse_primitives import N_EVENT_REPORT
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import A_ABORT, A_P_ABORT, A_RELEASE
from pynetdicom.sop_class import ModalityPerformedProcedureStep, StorageCommitmentPushModel

from archive import commitment, dimse, mpps, scu
from archive.errors import (
    ArchiveError, DatabaseBusy, DuplicatePerformedStep, FinalPerformedStep, InvalidCommitmentRequest,
    InvalidPerformedStep, UnknownPerformedStep,
)
from dicom.scp import allowed, peer, releasing

log = logging.getLogger(__name__)

# The SOP classes the listener accepts for these handlers.
SOP_CLASSES = [ModalityPerformedProcedureStep, StorageCommitmentPushModel]

# DIMSE-N statuses (PS3.7 Annex C).
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_SOP_INSTANCE = 0x0112
INVALID_ARGUMENT_VALUE = 0x0115
NO_SUCH_SOP_CLASS = 0x0118
NO_SUCH_ACTION = 0x0123
RESOURCE_LIMITATION = 0x0213
# PS3.4 F.7.2.2.4 (Table F.7.2-2): an N-SET of a step in its final state.
NO_LONGER_UPDATED = "Performed Procedure Step Object may no longer be updated"
NO_LONGER_UPDATED_ID = 0xA710
REPORT_MESSAGE_ID = 1


def handlers(policy):
    """The evt handlers of MPPS and Storage Commitment, for the listener's list."""
    return [
        (evt.EVT_N_CREATE, releasing(handle_n_create), [policy]),
        (evt.EVT_N_SET, releasing(handle_n_set), [policy]),
        (evt.EVT_N_ACTION, releasing(handle_n_action), [policy]),
    ]


def handle_n_create(event, policy):
    request = event.request
    if request.AffectedSOPClassUID != ModalityPerformedProcedureStep:
        return NO_SUCH_SOP_CLASS, None
    if not _allowed(event, policy, "N-CREATE"):
        return dimse.NOT_AUTHORIZED, None
    aet, _ = peer(event)
    # PS3.7 10.1.5.1.4: a request that names no instance lets the SCP choose
    # its UID and return it.
    sop_instance_uid = request.AffectedSOPInstanceUID or generate_uid()
    try:
        step = mpps.create(sop_instance_uid, event.attribute_list.to_json_dict(), calling_aet=aet)
    except ArchiveError as error:
        log.warning("MPPS N-CREATE %s from %s refused: %s", sop_instance_uid, aet, error)
        return _failure(error), None
    log.info("MPPS %s from %s: %s, worklist item %s", step.sop_instance_uid, aet, step.status, step.worklist_item_id)
    if request.AffectedSOPInstanceUID:
        return dimse.SUCCESS, None
    answer = Dataset()
    answer.AffectedSOPInstanceUID = sop_instance_uid
    return dimse.SUCCESS, answer


def handle_n_set(event, policy):
    request = event.request
    if request.RequestedSOPClassUID != ModalityPerformedProcedureStep:
        return NO_SUCH_SOP_CLASS, None
    if not _allowed(event, policy, "N-SET"):
        return dimse.NOT_AUTHORIZED, None
    aet, _ = peer(event)
    try:
        step = mpps.update(request.RequestedSOPInstanceUID, event.modification_list.to_json_dict())
    except ArchiveError as error:
        log.warning("MPPS N-SET %s from %s refused: %s", request.RequestedSOPInstanceUID, aet, error)
        return _failure(error), None
    log.info("MPPS %s from %s: %s", step.sop_instance_uid, aet, step.status)
    return dimse.SUCCESS, None


def handle_n_action(event, policy):
    request = event.request
    if request.RequestedSOPClassUID != StorageCommitmentPushModel:
        return NO_SUCH_SOP_CLASS, None
    if request.RequestedSOPInstanceUID != dimse.STORAGE_COMMITMENT_INSTANCE:
        return NO_SUCH_SOP_INSTANCE, None
    if request.ActionTypeID != dimse.REQUEST_COMMITMENT:
        return NO_SUCH_ACTION, None
    if not _allowed(event, policy, "storage commitment"):
        return dimse.NOT_AUTHORIZED, None
    aet, _ = peer(event)
    information = event.action_information if request.ActionInformation is not None else Dataset()
    transaction_uid = str(information.get("TransactionUID", "") or "")
    references = [(item.get("ReferencedSOPClassUID", ""), item.get("ReferencedSOPInstanceUID", ""))
                  for item in information.get("ReferencedSOPSequence", None) or []]
    try:
        commitment.request(transaction_uid, references, calling_aet=aet)
    except ArchiveError as error:
        log.warning("storage commitment from %s refused: %s", aet, error)
        return _failure(error), None
    log.info("storage commitment %s from %s: %d instances", transaction_uid, aet, len(references))
    called_aet = event.assoc.acceptor.ae_title.strip()
    report = threading.Thread(target=_report, args=(event.assoc, transaction_uid, policy, aet, called_aet),
                              name=f"commitment-{transaction_uid[-12:]}")
    # The files are checked and the result sent after the answer: a request for
    # a whole study must not hold the N-ACTION response (PS3.4 J.3.2.1.3).
    _after_response(event.assoc, request.MessageID, report.start)
    return dimse.SUCCESS, None


def _failure(error):
    """The DIMSE-N status of an archive error."""
    if isinstance(error, FinalPerformedStep):
        answer = dimse.status(PROCESSING_FAILURE, NO_LONGER_UPDATED)
        answer.ErrorID = NO_LONGER_UPDATED_ID
        return answer
    if isinstance(error, InvalidPerformedStep):
        # PS3.4 F.7.2.1.3: an N-CREATE whose status is not IN PROGRESS.
        return dimse.status(INVALID_ATTRIBUTE_VALUE, str(error))
    if isinstance(error, DuplicatePerformedStep):
        return DUPLICATE_SOP_INSTANCE
    if isinstance(error, UnknownPerformedStep):
        return NO_SUCH_SOP_INSTANCE
    if isinstance(error, InvalidCommitmentRequest):
        return INVALID_ARGUMENT_VALUE
    if isinstance(error, DatabaseBusy):
        return RESOURCE_LIMITATION
    return dimse.status(PROCESSING_FAILURE, str(error))


def _allowed(event, policy, what):
    # A modality that may store may report its work and ask for commitment of
    # what it stored: the modality table's "store" covers all three.
    return allowed(event, policy, "store", what)


# --- the Storage Commitment Result -------------------------------------------------


def _after_response(assoc, message_id, then):
    """Call then() as soon as the response to the request message_id is queued.

    pynetdicom sends a handler's answer after the handler returns, and its
    EVT_DIMSE_SENT fires before the message is queued: the association's
    send_msg is wrapped for this one response, so that nothing then() sends can
    overtake the N-ACTION response."""
    provider = assoc.dimse
    send = provider.send_msg

    def send_then(primitive, context_id):
        send(primitive, context_id)
        if getattr(primitive, "MessageIDBeingRespondedTo", None) == message_id:
            provider.send_msg = send
            then()

    provider.send_msg = send_then


def _report(assoc, transaction_uid, policy, calling_aet, called_aet):
    """Check the request's instances and send the result: on the requester's
    association if it is still open and the requester acknowledges it, else on a
    new association, with the AE title the requester called (J.3.3.1.2 note 2)."""
    try:
        outcome = commitment.verify(transaction_uid)
        report = dimse.commitment_report(outcome, retrieve_aet=called_aet)
        if _report_on(assoc, outcome.event_type, report):
            commitment.reported(transaction_uid)
            log.info("storage commitment %s reported to %s on its association", transaction_uid, calling_aet)
            return
        log.info("storage commitment %s: %s did not take the report on its association", transaction_uid,
                 calling_aet)
        destination = policy.destination(calling_aet)
        if destination is None:
            log.error("storage commitment %s: %s left its association and is not in the modality table; "
                      "the result cannot be sent", transaction_uid, calling_aet)
            return
        peer = scu.Peer(aet=calling_aet, host=destination[0], port=destination[1], local_aet=called_aet)
        scu.report_commitment(peer, outcome.event_type, report)
        commitment.reported(transaction_uid)
        log.info("storage commitment %s reported to %s at %s:%d", transaction_uid, calling_aet, *destination)
    except Exception:  # a thread of its own: nobody else would see the error
        log.exception("storage commitment %s: the result was not delivered", transaction_uid)
    finally:
        connection.close()


def _report_on(assoc, event_type, report):
    """Send the N-EVENT-REPORT on the association the request came on; whether the
    requester acknowledged it with success.

    pynetdicom's send_n_event_report() pauses the association's reactor and waits
    for the answer without looking at anything else, so a requester that releases
    meanwhile (as it may) would wait for its release to be answered until both
    time out. This does the same exchange but gives up, and lets the reactor
    answer the release, as soon as the requester releases or aborts."""
    context = next((cx for cx in assoc.accepted_contexts if cx.abstract_syntax == dimse.STORAGE_COMMITMENT), None)
    if context is None or not assoc.is_established:
        return False
    syntax = context.transfer_syntax[0]
    request = N_EVENT_REPORT()
    request.MessageID = REPORT_MESSAGE_ID
    request.AffectedSOPClassUID = dimse.STORAGE_COMMITMENT
    request.AffectedSOPInstanceUID = dimse.STORAGE_COMMITMENT_INSTANCE
    request.EventTypeID = event_type
    request.EventInformation = io.BytesIO(encode(report, syntax.is_implicit_VR, syntax.is_little_endian,
                                                 syntax.is_deflated))
    others = []
    # Paused as pynetdicom's own send_*() pause it: the reactor must not take
    # the answer off the queue.
    assoc._reactor_checkpoint.clear()
    try:
        while not assoc._is_paused:
            if _leaving(assoc):
                return False
            time.sleep(0.0001)
        if _leaving(assoc):
            return False
        assoc.dimse.send_msg(request, context.context_id)
        deadline = time.monotonic() + (assoc.dimse_timeout or settings.DICOM_TIMEOUT)
        while time.monotonic() < deadline:
            try:
                context_id, answer = assoc.dimse.msg_queue.get(timeout=0.05)
            except queue.Empty:
                if _leaving(assoc):
                    return False
                continue
            if isinstance(answer, N_EVENT_REPORT) and answer.MessageIDBeingRespondedTo == REPORT_MESSAGE_ID:
                return answer.Status == dimse.SUCCESS
            others.append((context_id, answer))  # a request of the peer's: the reactor serves it
        log.warning("no answer to the storage commitment report from %s", assoc.requestor.ae_title.strip())
        return False
    finally:
        for item in others:
            assoc.dimse.msg_queue.put(item)
        assoc._reactor_checkpoint.set()


def _leaving(assoc):
    """Whether the association ended, or the peer asked to release or aborted
    (what the paused reactor has not yet answered)."""
    if not assoc.is_established or not assoc.dul.is_alive():
        return True
    return isinstance(assoc.dul.peek_next_pdu(), (A_RELEASE, A_ABORT, A_P_ABORT))
