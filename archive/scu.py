"""pacsweb as a DICOM SCU: echo, store, find, move and get against a remote AE.

Functions take the peer as plain values (a Peer), so the caller decides where
peers come from (the cluster's modality table); instances received by a C-GET
enter the archive through the one ingest path.
"""

import logging
import queue
from dataclasses import dataclass, field

import pydicom
from django.conf import settings
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from archive.errors import DicomNetworkError, TranscodeError  # noqa: F401 (raised here, caught by name)
from archive import ingest
from archive.models import Attachment, Instance, Level
from archive.storage import get_storage

# Importing dimse sets TCP_NODELAY on the sockets pynetdicom opens.
from archive import dimse

log = logging.getLogger(__name__)

LEVEL_NAMES = {Level.PATIENT: "PATIENT", Level.STUDY: "STUDY", Level.SERIES: "SERIES", Level.INSTANCE: "IMAGE"}
UNIQUE_KEY = {Level.PATIENT: "PatientID", Level.STUDY: "StudyInstanceUID",
              Level.SERIES: "SeriesInstanceUID", Level.INSTANCE: "SOPInstanceUID"}


@dataclass(frozen=True)
class Peer:
    aet: str
    host: str
    port: int
    local_aet: str = ""
    timeout: int = 0


@dataclass
class TransferReport:
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list = None


@dataclass
class CommitmentResult:
    """What a peer answered a storage commitment request: the SOP Instance UIDs it
    committed to, and (SOP Instance UID, Failure Reason) of the others."""

    transaction_uid: str
    committed: list = field(default_factory=list)
    failed: list = field(default_factory=list)


def _ae(peer):
    dimse.log_handlers_as_logged()
    ae = AE(ae_title=peer.local_aet or settings.AE_TITLE)
    timeout = peer.timeout or settings.DICOM_TIMEOUT
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.maximum_pdu_size = settings.DICOM_MAX_PDU
    return ae


def _associate(ae, peer, **kwargs):
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.aet, **kwargs)
    if not assoc.is_established:
        if assoc.is_rejected:
            raise DicomNetworkError(f"{peer.aet} at {peer.host}:{peer.port} rejected the association")
        raise DicomNetworkError(f"cannot open an association with {peer.aet} at {peer.host}:{peer.port}")
    return assoc


def echo(peer):
    ae = _ae(peer)
    ae.add_requested_context(Verification)
    assoc = _associate(ae, peer)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or status.Status != 0x0000:
        raise DicomNetworkError(f"{peer.aet} answered the C-ECHO with {_code(status)}")


def request_commitment(peer, instance_ids):
    """Ask the peer to commit to the given instances (public ids) and wait, on the
    same association, for its Storage Commitment Result (PS3.4 J.3); a CommitmentResult.

    Only a result sent on the requesting association is awaited: a peer that
    always answers on a new association (J.3.3.1.2 allows it) is reported as
    having sent none within the peer's timeout."""
    rows = list(Instance.objects.filter(public_id__in=instance_ids).values_list("sop_class_uid", "sop_instance_uid"))
    information = Dataset()
    information.TransactionUID = generate_uid()
    information.ReferencedSOPSequence = [
        dimse.reference(sop_class, sop_instance) for sop_class, sop_instance in rows]
    results = queue.Queue()

    def received(event):
        results.put(event.event_information)
        return 0x0000, None

    ae = _ae(peer)
    ae.add_requested_context(dimse.STORAGE_COMMITMENT, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    # With Verification beside it, a peer without storage commitment still
    # accepts the association, and the error can say what is missing.
    ae.add_requested_context(Verification)
    assoc = _associate(ae, peer, evt_handlers=[(evt.EVT_N_EVENT_REPORT, received)])
    timeout = peer.timeout or settings.DICOM_TIMEOUT
    try:
        if not any(cx.abstract_syntax == dimse.STORAGE_COMMITMENT for cx in assoc.accepted_contexts):
            raise DicomNetworkError(f"{peer.aet} does not accept storage commitment")
        status, _ = assoc.send_n_action(information, dimse.REQUEST_COMMITMENT, dimse.STORAGE_COMMITMENT,
                                        dimse.STORAGE_COMMITMENT_INSTANCE)
        if not status or status.Status != 0x0000:
            raise DicomNetworkError(f"{peer.aet} answered the storage commitment request with {_code(status)}")
        try:
            report = results.get(timeout=timeout)
        except queue.Empty:
            raise DicomNetworkError(f"{peer.aet} sent no storage commitment result on the association "
                                    f"within {timeout} s") from None
    finally:
        if assoc.is_established:
            assoc.release()
    result = CommitmentResult(str(information.TransactionUID))
    result.committed = [str(item.ReferencedSOPInstanceUID) for item in report.get("ReferencedSOPSequence", [])]
    result.failed = [(str(item.ReferencedSOPInstanceUID), int(item.get("FailureReason", 0x0110)))
                     for item in report.get("FailedSOPSequence", [])]
    return result


def report_commitment(peer, event_type, report):
    """Send a Storage Commitment Result (PS3.4 J.3.3) on a new association: the
    event type (dimse.ALL_COMMITTED or FAILURES_EXIST) and its Event Information
    (dimse.commitment_report)."""
    ae = _ae(peer)
    ae.add_requested_context(dimse.STORAGE_COMMITMENT, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    # The requester of this association is the commitment SCP: it asks for the
    # SCP role of the SOP class (PS3.4 J.3.3.1.2 note 1).
    role = build_role(dimse.STORAGE_COMMITMENT, scu_role=False, scp_role=True)
    assoc = _associate(ae, peer, ext_neg=[role])
    try:
        status, _ = assoc.send_n_event_report(report, event_type, dimse.STORAGE_COMMITMENT,
                                              dimse.STORAGE_COMMITMENT_INSTANCE)
    finally:
        if assoc.is_established:
            assoc.release()
    if not status or status.Status != 0x0000:
        raise DicomNetworkError(f"{peer.aet} answered the storage commitment report with {_code(status)}")


def store(peer, instance_ids, progress=None, originator=None):
    """C-STORE the given instances (public ids), in their order, to the peer over one
    association; a TransferReport. progress(done, total) follows each instance.
    originator (AE title, message id) marks each C-STORE as a C-MOVE's sub-operation
    (PS3.7 9.1.1.1: Move Originator AE Title and Message ID), as Orthanc's
    MoveOriginatorAet / MoveOriginatorID do."""
    found = {row[0]: row for row in Instance.objects.filter(public_id__in=instance_ids)
             .values_list("public_id", "sop_class_uid", "transfer_syntax_uid", "sop_instance_uid")}
    # In the caller's order: a job resumed at position N skips exactly the first N.
    rows = [found[public_id] for public_id in instance_ids if public_id in found]
    keys = dict(Attachment.objects.filter(resource_id__in=[r[0] for r in rows], name=Attachment.DICOM)
                .values_list("resource_id", "storage_key"))
    report = TransferReport(failed_uids=[])
    if not rows:
        return report
    ae = _ae(peer)
    for sop_class, syntaxes in dimse.storage_contexts((sop_class, syntax) for _, sop_class, syntax, _ in rows):
        ae.add_requested_context(sop_class, syntaxes)
    assoc = _associate(ae, peer)
    storage = get_storage()
    try:
        for done, (public_id, sop_class, syntax, sop_instance_uid) in enumerate(rows, 1):
            with storage.open(keys[public_id]) as stream:
                try:
                    dataset = dimse.dataset_to_send(stream, syntax, dimse.accepted_syntaxes(assoc, sop_class))
                except TranscodeError as error:
                    log.warning("instance %s not sent to %s: %s", public_id, peer.aet, error)
                    dataset = None
            if dataset is None:
                report.failed += 1
                report.failed_uids.append(sop_instance_uid)
                if progress:
                    progress(done, len(rows))
                continue
            if originator:
                status = assoc.send_c_store(dataset, originator_aet=originator[0], originator_id=originator[1])
            else:
                status = assoc.send_c_store(dataset)
            code = getattr(status, "Status", None)
            if code == 0x0000:
                report.completed += 1
            elif code is not None and code in (0xB000, 0xB007, 0xB006):
                report.warning += 1
            else:
                report.failed += 1
                report.failed_uids.append(str(dataset.SOPInstanceUID))
            if progress:
                progress(done, len(rows))
            if not assoc.is_established:
                raise DicomNetworkError(f"{peer.aet} dropped the association")
    finally:
        if assoc.is_established:
            assoc.release()
    return report


def store_straight(peer, stream):
    """C-STORE one DICOM file that is not in the archive (Orthanc's store-straight);
    its (SOP Class UID, SOP Instance UID) once the peer accepted it."""
    try:
        dataset = pydicom.dcmread(stream)
        sop_class, sop_instance = str(dataset.SOPClassUID), str(dataset.SOPInstanceUID)
        syntax = str(dataset.file_meta.TransferSyntaxUID)
    except Exception as error:  # pydicom raises many types on malformed input
        raise ingest.RejectedInstance(f"the body is not a DICOM file that can be sent: {error}")
    ae = _ae(peer)
    ae.add_requested_context(sop_class, sorted({syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian}))
    assoc = _associate(ae, peer)
    try:
        status = assoc.send_c_store(dataset)
    finally:
        if assoc.is_established:
            assoc.release()
    code = getattr(status, "Status", None)
    if code not in (0x0000, 0xB000, 0xB007, 0xB006):
        raise DicomNetworkError(f"{peer.aet} answered the C-STORE with {_code(status)}")
    return sop_class, sop_instance


def find_worklist(peer, query):
    """C-FIND of the modality worklist (PS3.4 K.6) with keyword → value keys (the
    Scheduled Procedure Step Sequence as a list of one such dict); the answers."""
    ae = _ae(peer)
    ae.add_requested_context(ModalityWorklistInformationFind)
    identifier = Dataset()
    identifier.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in query.items():
        if isinstance(value, list):
            items = []
            for fields in value:
                item = Dataset()
                for name, text in fields.items():
                    setattr(item, name, text)
                items.append(item)
            setattr(identifier, keyword, items)
        else:
            setattr(identifier, keyword, value)
    return _c_find(ae, peer, identifier, ModalityWorklistInformationFind, "worklist C-FIND")


def find(peer, level, query, patient_root=False):
    """C-FIND at a level with keyword → value keys; the answer datasets."""
    model = PatientRootQueryRetrieveInformationModelFind if (patient_root or level == Level.PATIENT) \
        else StudyRootQueryRetrieveInformationModelFind
    ae = _ae(peer)
    ae.add_requested_context(model)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = LEVEL_NAMES[level]
    identifier.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in query.items():
        setattr(identifier, keyword, value)
    if UNIQUE_KEY[level] not in identifier:
        setattr(identifier, UNIQUE_KEY[level], "")
    return _c_find(ae, peer, identifier, model, "C-FIND")


def _c_find(ae, peer, identifier, model, what):
    """The answers of one C-FIND on a new association; DicomNetworkError naming `what`."""
    assoc = _associate(ae, peer)
    answers = []
    try:
        for status, answer in assoc.send_c_find(identifier, model):
            if status is None:
                raise DicomNetworkError(f"{peer.aet} did not answer the {what}")
            if status.Status in (0xFF00, 0xFF01) and answer is not None:
                answers.append(answer)
            elif status.Status not in (0x0000, 0xFF00, 0xFF01):
                raise DicomNetworkError(f"{peer.aet} answered the {what} with {_code(status)}")
    finally:
        if assoc.is_established:
            assoc.release()
    return answers


def move(peer, level, identifiers, target_aet):
    """C-MOVE the resources named by unique keys (a list of dicts) to target_aet."""
    model = StudyRootQueryRetrieveInformationModelMove if level != Level.PATIENT \
        else PatientRootQueryRetrieveInformationModelMove
    ae = _ae(peer)
    ae.add_requested_context(model)
    assoc = _associate(ae, peer)
    report = TransferReport(failed_uids=[])
    try:
        for keys in identifiers:
            _collect(report, assoc.send_c_move(_retrieve_identifier(level, keys), target_aet, model), peer, "C-MOVE")
    finally:
        if assoc.is_established:
            assoc.release()
    return report


def get(peer, level, identifiers):
    """C-GET the resources named by unique keys; received instances are stored here."""
    model = StudyRootQueryRetrieveInformationModelGet if level != Level.PATIENT \
        else PatientRootQueryRetrieveInformationModelGet
    ae = _ae(peer)
    ae.add_requested_context(model)
    # An association has 128 presentation contexts: the query model and the
    # storage classes a PACS is most likely to return, with any syntax.
    roles = []
    for context in StoragePresentationContexts[:127]:
        ae.add_requested_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES[:4])
        roles.append(build_role(context.abstract_syntax, scp_role=True))
    origin = ingest.Origin.dicom(peer.aet, peer.host)

    def received(event):
        try:
            ingest.store(event.encoded_dataset(include_meta=True), origin)
        except ingest.RejectedInstance as error:
            return dimse.status(dimse.CANNOT_UNDERSTAND, str(error))
        except Exception as error:  # the peer must get a status, whatever failed
            log.error("C-GET sub-operation from %s failed: %s", peer.aet, error)
            return dimse.status(dimse.OUT_OF_RESOURCES, str(error))
        return 0x0000

    assoc = _associate(ae, peer, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, received)])
    report = TransferReport(failed_uids=[])
    try:
        for keys in identifiers:
            _collect(report, assoc.send_c_get(_retrieve_identifier(level, keys), model), peer, "C-GET")
    finally:
        if assoc.is_established:
            assoc.release()
    return report


def _retrieve_identifier(level, keys):
    identifier = Dataset()
    identifier.QueryRetrieveLevel = LEVEL_NAMES[level]
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return identifier


def _collect(report, responses, peer, what):
    """Add the sub-operation counts of a C-MOVE / C-GET's final response to the report."""
    final = None
    for status, _ in responses:
        if status is None:
            raise DicomNetworkError(f"{peer.aet} did not answer the {what}")
        final = status
    if final is None:
        raise DicomNetworkError(f"{peer.aet} sent no final {what} response")
    report.completed += int(getattr(final, "NumberOfCompletedSuboperations", 0) or 0)
    report.failed += int(getattr(final, "NumberOfFailedSuboperations", 0) or 0)
    report.warning += int(getattr(final, "NumberOfWarningSuboperations", 0) or 0)
    if final.Status not in (0x0000, 0xB000):
        raise DicomNetworkError(f"{peer.aet} ended the {what} with {_code(final)}")


def _code(status):
    return f"status 0x{status.Status:04X}" if status is not None and "Status" in status else "no status"

