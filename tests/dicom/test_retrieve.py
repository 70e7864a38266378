"""C-MOVE and C-GET: the listener sends back what it holds."""

import os
import re
import subprocess

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from tests import servers
from tests.dicomgen import make_instance, pydicom_test_files, uid
from tests.dicom.conftest import DCMTK_ENV, TIMEOUT, dcmtk, dcmtk_executable, post_instance
from tests.waiting import wait_for

STUDY = uid("retrieve", "study-1")
OTHER_STUDY = uid("retrieve", "study-2")
SERIES = {"CT": uid(STUDY, "CT"), "MR": uid(STUDY, "MR")}


def seed():
    """SOP Instance UID → file bytes: study 1 (4 CT + 2 MR), study 2 (3 CT, another patient)."""
    files = {}
    for modality, count in (("CT", 4), ("MR", 2)):
        for n in range(1, count + 1):
            sop = uid("retrieve", modality, n)
            files[sop] = make_instance(patient_id="RET-1", study_uid=STUDY, series_uid=SERIES[modality], sop_uid=sop,
                                       modality=modality, instance_number=n, rows=16, columns=16)
    for n in range(1, 4):
        sop = uid("retrieve", "other", n)
        files[sop] = make_instance(patient_id="RET-2", study_uid=OTHER_STUDY, sop_uid=sop, instance_number=n,
                                   rows=16, columns=16)
    return files


SEED = seed()
STUDY_SOPS = {sop for sop in SEED if pydicom.dcmread(pydicom.filebase.DicomBytesIO(SEED[sop])).StudyInstanceUID == STUDY}


class StoreSCP:
    """DCMTK's storescp, writing what it receives to a directory."""

    def __init__(self, directory, aet="STORESCP"):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = servers.free_port()
        self.aet = aet
        self.log = open(directory.parent / f"storescp-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [dcmtk_executable("storescp"), "-v", "-aet", aet, "+xa", "-od", str(directory), str(self.port)],
            env=DCMTK_ENV, stdout=self.log, stderr=subprocess.STDOUT,
        )

        def listening():
            assert self.process.poll() is None, "storescp exited"
            return servers.accepts_connections(self.port)

        wait_for(listening, what="storescp listening")

    def received(self, count):
        """The datasets received, once there are `count` of them.

        Called once the retrieve has answered: storescp answers each C-STORE after
        writing its file (the status it answers is the write's), and the final
        retrieve response comes after every sub-operation's answer, so the files
        present are complete.
        """
        wait_for(lambda: len(self.files()) >= count, what=f"{count} files received by storescp")
        return [pydicom.dcmread(path) for path in self.files()]

    def files(self):
        return [p for p in self.directory.iterdir() if p.is_file()]

    def clear(self):
        for path in self.files():
            path.unlink()

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.log.close()


@pytest.fixture(scope="module")
def storescp(tmp_path_factory):
    scp = StoreSCP(tmp_path_factory.mktemp("storescp") / "received")
    yield scp
    scp.stop()


@pytest.fixture
def destination(storescp):
    storescp.clear()
    return storescp


JPEG_FILE = next(p for p in pydicom_test_files() if os.path.basename(p) == "SC_rgb_jpeg_dcmtk.dcm")


@pytest.fixture(scope="module")
def node(module_node, storescp):
    server = module_node.server()
    for data in SEED.values():
        post_instance(server, data)
    with open(JPEG_FILE, "rb") as f:
        post_instance(server, f.read())
    modalities = {
        "storescp": {"AET": storescp.aet, "Host": "127.0.0.1", "Port": storescp.port},
        "movescu": ["MOVESCU", "127.0.0.1", 11130],
        "getscu": ["GETSCU", "127.0.0.1", 11131],
        "pyscu": ["PYSCU", "127.0.0.1", 11132],
    }
    return server, module_node.listener(server, modalities=modalities)


def original(sop_uid):
    return pydicom.dcmread(pydicom.filebase.DicomBytesIO(SEED[sop_uid]))


def assert_same_instances(datasets, sop_uids):
    assert sorted(ds.SOPInstanceUID for ds in datasets) == sorted(sop_uids)
    for ds in datasets:
        assert ds.PixelData == original(ds.SOPInstanceUID).PixelData
        assert ds.StudyInstanceUID == original(ds.SOPInstanceUID).StudyInstanceUID


def move_query(level="STUDY", **keys):
    query = Dataset()
    query.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    return query


# --- C-MOVE -----------------------------------------------------------------------


def test_movescu_sends_every_instance_of_the_study_to_storescp(node, destination):
    _, listener = node
    result = dcmtk("movescu", "-v", "-S", "-aet", "MOVESCU", "-aec", listener.ae_title, "-aem", destination.aet,
                   "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}", "127.0.0.1", listener.port)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"Received Final Move Response \(Success\)", output), output
    assert_same_instances(destination.received(len(STUDY_SOPS)), STUDY_SOPS)


def test_pynetdicom_c_move_of_a_series_reports_its_sub_operations(node, destination):
    _, listener = node
    model = StudyRootQueryRetrieveInformationModelMove
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(model)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=listener.ae_title)
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_move(move_query("SERIES", StudyInstanceUID=STUDY, SeriesInstanceUID=SERIES["MR"]),
                                           destination.aet, model))
    finally:
        assoc.release()
    final = responses[-1][0]
    assert final.Status == 0x0000
    assert (final.NumberOfCompletedSuboperations, final.get("NumberOfFailedSuboperations", 0)) == (2, 0)
    assert_same_instances(destination.received(2), [uid("retrieve", "MR", n) for n in (1, 2)])


def test_c_move_keeps_the_stored_transfer_syntax_of_a_jpeg_instance(node, destination):
    _, listener = node
    jpeg = pydicom.dcmread(JPEG_FILE)
    result = dcmtk("movescu", "-S", "-aet", "MOVESCU", "-aem", destination.aet, "-k", "QueryRetrieveLevel=IMAGE",
                   "-k", f"StudyInstanceUID={jpeg.StudyInstanceUID}", "-k", f"SeriesInstanceUID={jpeg.SeriesInstanceUID}",
                   "-k", f"SOPInstanceUID={jpeg.SOPInstanceUID}", "127.0.0.1", listener.port)
    assert result.returncode == 0, result.stdout + result.stderr
    [received] = destination.received(1)
    assert received.SOPInstanceUID == jpeg.SOPInstanceUID
    assert received.file_meta.TransferSyntaxUID == jpeg.file_meta.TransferSyntaxUID
    assert received.PixelData == jpeg.PixelData


def test_c_move_to_an_unknown_destination_fails_with_0xA801(node, destination):
    _, listener = node
    model = StudyRootQueryRetrieveInformationModelMove
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(model)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    assoc = ae.associate("127.0.0.1", listener.port)
    assert assoc.is_established
    try:
        statuses = [status.Status for status, _ in assoc.send_c_move(move_query(StudyInstanceUID=STUDY), "NOWHERE", model)]
    finally:
        assoc.release()
    assert statuses == [0xA801]
    assert destination.received(0) == []


def test_c_move_of_an_unknown_study_moves_nothing_and_succeeds(node, destination):
    _, listener = node
    result = dcmtk("movescu", "-v", "-S", "-aet", "MOVESCU", "-aem", destination.aet, "-k", "QueryRetrieveLevel=STUDY",
                   "-k", f"StudyInstanceUID={uid('retrieve', 'nothing')}", "127.0.0.1", listener.port)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"Received Final Move Response \(Success\)", output), output
    assert destination.received(0) == []


# --- C-GET ------------------------------------------------------------------------


def test_getscu_receives_the_instances_of_a_series(node, tmp_path):
    _, listener = node
    result = dcmtk("getscu", "-v", "-S", "-aet", "GETSCU", "-aec", listener.ae_title, "-k", "QueryRetrieveLevel=SERIES",
                   "-k", f"StudyInstanceUID={STUDY}", "-k", f"SeriesInstanceUID={SERIES['CT']}", "-od", tmp_path,
                   "127.0.0.1", listener.port)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Received C-GET Response (Success)" in output, output
    assert re.search(r"Number of Completed Suboperations\s*:\s*4\n", output), output
    assert_same_instances([pydicom.dcmread(p) for p in tmp_path.iterdir()], [uid("retrieve", "CT", n) for n in range(1, 5)])


def test_pynetdicom_c_get_receives_the_instances_of_a_study(node):
    _, listener = node
    model = StudyRootQueryRetrieveInformationModelGet
    received = []

    def on_store(event):
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(model)
    for sop_class in (CTImageStorage, MRImageStorage):
        ae.add_requested_context(sop_class)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    roles = [build_role(sop_class, scp_role=True) for sop_class in (CTImageStorage, MRImageStorage)]
    assoc = ae.associate("127.0.0.1", listener.port, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_get(move_query(StudyInstanceUID=STUDY), model))
    finally:
        assoc.release()
    final = responses[-1][0]
    assert final.Status == 0x0000
    assert {status.Status for status, _ in responses[:-1]} <= {0xFF00}
    assert final.NumberOfCompletedSuboperations == len(STUDY_SOPS)
    assert_same_instances(received, STUDY_SOPS)
