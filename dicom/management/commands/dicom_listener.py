"""The DICOM listener: C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET SCP.

Any number of listeners, on any nodes, can serve one archive: each association
is independent and everything it needs is in the shared database and storage.
SIGTERM stops accepting associations, lets the running ones finish (up to
PACS_DICOM_TIMEOUT seconds), and exits.
"""

import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts
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

from archive import dimse
from dicom import scp, workflow
from cluster import registry
from archive.modalities import InvalidModality, ModalityAccess, load_modalities_file

log = logging.getLogger("pacsweb.dicom")

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian]
QUERY_RETRIEVE = [
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
]


class ArchiveAE(AE):
    """An AE whose list of accepted calling AE titles is the modality table at
    the moment an association arrives (pynetdicom reads it once per request)."""

    def __init__(self, policy, **kwargs):
        super().__init__(**kwargs)
        self._policy = policy

    @property
    def require_calling_aet(self):
        if self._policy.accepts_unknown():
            return []
        try:
            # An empty list means "anyone" to pynetdicom: with no modality known,
            # no AE title may pass, so give one that no AE can have.
            return self._policy.known_aets() or ["\\"]
        finally:
            # Read in the association's thread: give its connection back to the
            # pool now (see dicom.scp.releasing).
            connection.close()

    @require_calling_aet.setter
    def require_calling_aet(self, value):
        pass


class Command(BaseCommand):
    help = "Run the DICOM listener (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET) on PACS_DICOM_PORT."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.DICOM_PORT)
        parser.add_argument("--bind", default="0.0.0.0")

    def handle(self, *args, port, bind, **options):
        if settings.MODALITIES_FILE:
            try:
                names = load_modalities_file(settings.MODALITIES_FILE)
            except (OSError, InvalidModality) as error:
                raise CommandError(f"PACS_MODALITIES_FILE: {error}")
            log.info("loaded %d modalities from %s", len(names), settings.MODALITIES_FILE)

        dimse.log_handlers_as_logged()
        policy = ModalityAccess()
        ae = ArchiveAE(policy, ae_title=settings.AE_TITLE)
        ae.maximum_associations = settings.DICOM_MAX_ASSOCIATIONS
        ae.maximum_pdu_size = settings.DICOM_MAX_PDU
        ae.network_timeout = settings.DICOM_TIMEOUT
        ae.acse_timeout = settings.DICOM_TIMEOUT
        ae.dimse_timeout = settings.DICOM_TIMEOUT
        ae.require_called_aet = settings.DICOM_CHECK_CALLED_AET
        ae.add_supported_context(Verification)
        try:
            storage_classes = dimse.storage_classes(settings.DICOM_STORAGE_CLASSES)
        except ValueError as error:
            raise CommandError(f"PACS_DICOM_STORAGE_CLASSES: {error}")
        for sop_class in storage_classes:
            # Every syntax a modality may send is stored as received (a superset
            # of what Orthanc accepts by default); the SCP role lets a C-GET
            # requestor receive on its own association. A class not listed is
            # refused at negotiation: its presentation context is answered
            # "abstract syntax not supported" (PS3.8 §9.3.3.2, result 3).
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        for sop_class in QUERY_RETRIEVE:
            ae.add_supported_context(sop_class, UNCOMPRESSED)
        # Modality Worklist C-FIND (PS3.4 K), answered from archive.worklist.
        ae.add_supported_context(ModalityWorklistInformationFind, UNCOMPRESSED)
        # MPPS and Storage Commitment: we are the SCP; a requester proposing role
        # selection (PS3.4 F.2.1, J.2.1 make it mandatory) gets the roles it asks.
        for sop_class in workflow.SOP_CLASSES:
            ae.add_supported_context(sop_class, UNCOMPRESSED, scu_role=True, scp_role=True)
        # Contexts we propose when we call a peer (C-MOVE sub-operations).
        ae.requested_contexts = [c for c in AllStoragePresentationContexts[:127]]

        # Installed before the port opens: a SIGTERM that arrives as soon as the
        # port accepts still means "finish and exit 0".
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())

        handlers = scp.handlers(policy, scp.Options(ae_title=settings.AE_TITLE,
                                                    max_find_answers=settings.DICOM_MAX_FIND_ANSWERS))
        handlers += workflow.handlers(policy)
        try:
            server = ae.make_server((bind, port), evt_handlers=handlers, server_class=scp.NoDelayServer)
        except OSError as error:
            raise CommandError(f"cannot listen on {bind}:{port}: {error.strerror or error}")
        ae._servers.append(server)  # as start_server does: shutdown() expects it there
        registry.start_heartbeat("dicom", associations=lambda: len(ae.active_associations))
        thread = threading.Thread(target=server.serve_forever, name="dicom-acceptor", daemon=True)
        thread.start()
        log.info("DICOM listener %s on %s:%d", settings.AE_TITLE, bind, port)
        self.stdout.write(f"DICOM listener {settings.AE_TITLE} listening on {bind}:{port}")
        self.stdout.flush()

        # Wait with a timeout: the kernel may deliver the signal to an association
        # thread, and Python runs the handler only when the main thread next runs
        # bytecode; an untimed wait could then sleep through the SIGTERM.
        while not stop.wait(0.2):
            pass
        # No new association from here on; the running ones may finish.
        server.shutdown()
        # Wait for associations that are doing work; a connection that never
        # sent an association request (a TCP health check) is just dropped.
        deadline = time.monotonic() + settings.DICOM_TIMEOUT
        while any(a.is_established for a in ae.active_associations) and time.monotonic() < deadline:
            time.sleep(0.1)
        for assoc in ae.active_associations:
            assoc.abort()
        log.info("DICOM listener stopped")
