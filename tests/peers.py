"""A DICOM peer the tests start in their own process (pynetdicom)."""

import time

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)


class RemotePacs:
    """A small PACS in the test process: stores what it receives, answers
    STUDY-level C-FIND, and serves C-MOVE / C-GET from what it holds."""

    def __init__(self, port, aet="REMOTE", destinations=None, delay=0.0):
        self.delay = delay  # seconds each C-STORE takes: a slow peer
        self.received = []
        self.originators = []  # (Move Originator AE Title, Message ID) of each C-STORE received
        self.held = []
        self.destinations = destinations or {}
        ae = AE(ae_title=aet)
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES, scp_role=True, scu_role=True)
        for model in (StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelMove,
                      StudyRootQueryRetrieveInformationModelGet):
            ae.add_supported_context(model)
        ae.add_requested_context(pydicom.uid.CTImageStorage)
        handlers = [(evt.EVT_C_STORE, self._store), (evt.EVT_C_FIND, self._find),
                    (evt.EVT_C_MOVE, self._move), (evt.EVT_C_GET, self._get)]
        self.ae = ae
        self.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
        self.port = port

    def _store(self, event):
        time.sleep(self.delay)  # a simulated slow peer: a delay of the fake, not synchronisation
        self.received.append(event.dataset)
        request = event.request
        self.originators.append((request.MoveOriginatorApplicationEntityTitle, request.MoveOriginatorMessageID))
        return 0x0000

    def _matching(self, identifier):
        uids = str(identifier.get("StudyInstanceUID", "") or "").split("\\")
        pattern = str(identifier.get("PatientID", "") or "")
        out = []
        for ds in self.held:
            if uids != [""] and ds.StudyInstanceUID not in uids:
                continue
            if pattern and not ds.PatientID.startswith(pattern.rstrip("*")):
                continue
            out.append(ds)
        return out

    def _find(self, event):
        seen = set()
        for ds in self._matching(event.identifier):
            if ds.StudyInstanceUID in seen:
                continue
            seen.add(ds.StudyInstanceUID)
            answer = Dataset()
            answer.QueryRetrieveLevel = "STUDY"
            answer.PatientID = ds.PatientID
            answer.StudyInstanceUID = ds.StudyInstanceUID
            answer.PatientName = ds.PatientName
            yield 0xFF00, answer

    def _move(self, event):
        destination = self.destinations.get(event.move_destination.strip() if isinstance(event.move_destination, str)
                                            else event.move_destination.decode().strip())
        if destination is None:
            yield None, None
            return
        matches = self._matching(event.identifier)
        yield destination[0], destination[1]
        yield len(matches)
        for ds in matches:
            yield 0xFF00, ds

    def _get(self, event):
        matches = self._matching(event.identifier)
        yield len(matches)
        for ds in matches:
            yield 0xFF00, ds

    def stop(self):
        self.server.shutdown()
