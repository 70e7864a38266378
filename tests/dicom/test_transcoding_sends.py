"""Sends of compressed instances (REST store, C-MOVE, C-GET) to peers that accept every syntax or only uncompressed ones.

The SCU proposes one presentation context per (SOP class, stored syntax) plus an
uncompressed one; an instance the peer accepts as stored goes as stored, one it
does not is decompressed (what Orthanc does), and both arrive with equal pixels.
"""

import io
import json
import os
import subprocess

import numpy as np
import pydicom
import pytest
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

from tests import servers
from tests.dicom.conftest import DCMTK_ENV, TIMEOUT, dcmtk, dcmtk_executable, post_instance
from tests.dicomgen import pydicom_test_files, uid
from tests.waiting import wait_for

FILES = {  # stored syntax → one of pydicom's test files
    "1.2.840.10008.1.2.4.90": "MR_small_jp2klossless.dcm",
    "1.2.840.10008.1.2.4.80": "MR_small_jpeg_ls_lossless.dcm",
    "1.2.840.10008.1.2.4.70": "SC_rgb_jpeg_gdcm.dcm",
    "1.2.840.10008.1.2.5": "SC_rgb_rle_2frame.dcm",
}
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def own_copy(syntax, name):
    """The test file with UIDs of its own (several of pydicom's files share MR_small's), pixel data untouched."""
    ds = pydicom.dcmread(next(p for p in pydicom_test_files() if os.path.basename(p) == name))
    ds.StudyInstanceUID = uid("transcoding-sends")
    ds.SeriesInstanceUID = uid("transcoding-sends", syntax)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid("transcoding-sends", syntax, "instance")
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


COPIES = {syntax: own_copy(syntax, name) for syntax, name in FILES.items()}
DATASETS = {syntax: pydicom.dcmread(io.BytesIO(data)) for syntax, data in COPIES.items()}
ORIGINALS = {ds.SOPInstanceUID: ds for ds in DATASETS.values()}


class StoreSCP:
    """DCMTK's storescp: `+xa` accepts every syntax; without it, uncompressed ones only (its default)."""

    def __init__(self, directory, aet, accept_all):
        self.directory, self.aet = directory, aet
        directory.mkdir(parents=True)
        self.port = servers.free_port()
        self.log = open(directory.parent / f"{aet}.log", "w")
        options = ["+xa"] if accept_all else []
        self.process = subprocess.Popen(
            [dcmtk_executable("storescp"), "-aet", aet, *options, "-od", str(directory), str(self.port)],
            env=DCMTK_ENV, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: servers.accepts_connections(self.port), what=f"{aet} listening")

    def received(self, count):
        wait_for(lambda: len(self.files()) >= count, what=f"{count} files received by {self.aet}")
        return [pydicom.dcmread(path) for path in self.files()]

    def files(self):
        return [p for p in self.directory.iterdir() if p.is_file()]

    def clear(self):
        for path in self.files():
            path.unlink()

    def stop(self):
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    root = tmp_path_factory.mktemp("peers")
    started = {"all": StoreSCP(root / "all", "ACCEPTSALL", True), "plain": StoreSCP(root / "plain", "PLAINONLY", False)}
    yield started
    for scp in started.values():
        scp.stop()


@pytest.fixture(scope="module")
def node(module_node, peers):
    server = module_node.server()
    ids = [post_instance(server, data)["ID"] for data in COPIES.values()]
    modalities = {name: {"AET": scp.aet, "Host": "127.0.0.1", "Port": scp.port} for name, scp in peers.items()}
    modalities["movescu"] = ["MOVESCU", "127.0.0.1", 11140]
    modalities["pyget"] = ["PYGET", "127.0.0.1", 11141]
    for name, modality in modalities.items():
        body = modality if isinstance(modality, dict) else dict(zip(("AET", "Host", "Port"), modality))
        status, _ = servers.request_json(f"{server.url}/modalities/{name}", method="PUT", body=json.dumps(body).encode())
        assert status == 200
    return server, module_node.listener(server, modalities=modalities), ids


@pytest.fixture(params=["all", "plain"])
def peer(request, peers):
    scp = peers[request.param]
    scp.clear()
    return request.param, scp


def assert_received_with_equal_pixels(datasets, accept_all):
    assert sorted(ds.SOPInstanceUID for ds in datasets) == sorted(ORIGINALS)
    for ds in datasets:
        original = ORIGINALS[ds.SOPInstanceUID]
        if accept_all:
            # As stored: the same syntax and the same compressed bytes.
            assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
            assert ds.PixelData == original.PixelData
        else:
            assert ds.file_meta.TransferSyntaxUID in UNCOMPRESSED
        assert np.array_equal(ds.pixel_array, original.pixel_array)


def test_rest_store_sends_every_instance_as_stored_or_decompressed(node, peer):
    server, _, ids = node
    name, scp = peer

    status, answer = servers.request_json(f"{server.url}/modalities/{name}/store", method="POST",
                                          body=json.dumps({"Resources": ids}).encode())

    assert status == 200, answer
    assert (answer["InstancesCount"], answer["FailedInstancesCount"]) == (len(ids), 0)
    assert_received_with_equal_pixels(scp.received(len(ids)), accept_all=name == "all")


def test_c_move_sends_every_instance_as_stored_or_decompressed(node, peer):
    _, listener, _ = node
    name, scp = peer
    for ds in DATASETS.values():
        result = dcmtk("movescu", "-S", "-aet", "MOVESCU", "-aem", scp.aet, "-k", "QueryRetrieveLevel=IMAGE",
                       "-k", f"StudyInstanceUID={ds.StudyInstanceUID}", "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}",
                       "-k", f"SOPInstanceUID={ds.SOPInstanceUID}", "127.0.0.1", listener.port)
        assert result.returncode == 0, result.stdout + result.stderr
    assert_received_with_equal_pixels(scp.received(len(DATASETS)), accept_all=name == "all")


@pytest.mark.parametrize("accept_all", [True, False])
def test_c_get_sends_every_instance_as_stored_or_decompressed(node, accept_all):
    _, listener, _ = node
    model = StudyRootQueryRetrieveInformationModelGet
    received = []

    def on_store(event):
        received.append(event.dataset)
        event.dataset.file_meta = event.file_meta
        return 0x0000

    classes = sorted({ds.SOPClassUID for ds in DATASETS.values()})
    ae = AE(ae_title="PYGET")
    ae.add_requested_context(model)
    for sop_class in classes:
        ae.add_requested_context(sop_class, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        if accept_all:
            for syntax in FILES:
                ae.add_requested_context(sop_class, [syntax])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    roles = [build_role(sop_class, scp_role=True) for sop_class in classes]
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=listener.ae_title, ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        for ds in DATASETS.values():
            query = pydicom.Dataset()
            query.QueryRetrieveLevel = "IMAGE"
            query.StudyInstanceUID, query.SeriesInstanceUID = ds.StudyInstanceUID, ds.SeriesInstanceUID
            query.SOPInstanceUID = ds.SOPInstanceUID
            final = list(assoc.send_c_get(query, model))[-1][0]
            assert (final.Status, final.NumberOfCompletedSuboperations) == (0x0000, 1)
    finally:
        assoc.release()
    assert_received_with_equal_pixels(received, accept_all)
