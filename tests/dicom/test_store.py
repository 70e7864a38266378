"""C-STORE: what a modality sends is stored as sent, once."""

import io
import os

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import _config
from pynetdicom.sop_class import CTImageStorage

from tests import servers
from tests.dicomgen import make_instance, pydicom_test_files, uid
from tests.dicom.conftest import association, dcmtk, instance_ids, statistics, stored_dataset


@pytest.fixture(scope="module")
def node(module_node):
    server = module_node.server()
    return server, module_node.listener(server)


def folder_instances():
    """20 files: study A (2 series: 8 CT + 4 MR), study B (8 CT), two patients."""
    files = []
    study_a, study_b = uid("store", "A"), uid("store", "B")
    for series, modality, count in ((uid(study_a, "CT"), "CT", 8), (uid(study_a, "MR"), "MR", 4)):
        for n in range(1, count + 1):
            files.append(make_instance(patient_id="STORE-A", patient_name="FOLDER^ANNA", study_uid=study_a,
                                       series_uid=series, modality=modality, instance_number=n))
    for n in range(1, 9):
        files.append(make_instance(patient_id="STORE-B", patient_name="FOLDER^BORIS", study_uid=study_b,
                                   series_uid=uid(study_b, "CT"), instance_number=n, rows=32, columns=48))
    return files


@pytest.fixture(scope="module")
def folder_sent(node, tmp_path_factory):
    """storescu of a folder of 20 files on one association; statistics before and after."""
    server, listener = node
    folder = tmp_path_factory.mktemp("folder")
    originals = {}
    for n, data in enumerate(folder_instances()):
        path = folder / f"IM{n:04d}"
        path.write_bytes(data)
        originals[pydicom.dcmread(path).SOPInstanceUID] = path
    before = statistics(server)
    result = dcmtk("storescu", "-v", "-aet", "STORESCU", "-aec", listener.ae_title, "+sd", "127.0.0.1",
                   listener.port, folder, timeout=120)
    return result, before, statistics(server), originals


def test_storescu_folder_succeeds_and_statistics_count_two_studies(folder_sent):
    result, before, after, originals = folder_sent
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).count("Received Store Response (Success)") == 20
    delta = {key: after[key] - before[key] for key in ("CountPatients", "CountStudies", "CountSeries", "CountInstances")}
    assert delta == {"CountPatients": 2, "CountStudies": 2, "CountSeries": 3, "CountInstances": 20}


def test_storescu_instances_record_their_dicom_origin(folder_sent, node):
    server, listener = node
    rows = server.sql("SELECT sop_instance_uid, origin, remote_aet, remote_ip, called_aet FROM instance "
                      "WHERE sop_instance_uid = ANY(%s)", [list(folder_sent[3])])
    assert len(rows) == 20
    assert {row[1:] for row in rows} == {("DicomProtocol", "STORESCU", "127.0.0.1", listener.ae_title)}


def dataset_part(data):
    """The bytes of a Part 10 file after its file meta information."""
    assert data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00", "no group length first"
    return data[144 + int.from_bytes(data[140:144], "little"):]


def test_storescu_instances_round_trip_with_the_dataset_sent(folder_sent, node):
    server, _ = node
    ids = instance_ids(server)
    for sop_uid, path in folder_sent[3].items():
        status, _, body = servers.request(f"{server.url}/instances/{ids[sop_uid]}/file")
        assert status == 200
        # The file meta is rebuilt from the presentation context; the dataset is the bytes sent.
        stored = pydicom.dcmread(io.BytesIO(body))
        assert stored.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert stored.file_meta.MediaStorageSOPInstanceUID == sop_uid
        assert stored == pydicom.dcmread(path), f"{path.name}: the stored dataset differs from the file sent"
        assert dataset_part(body) == dataset_part(path.read_bytes()), f"{path.name}: the dataset bytes differ"


# pydicom's real-world files in every transfer syntax storescu can send as is, and
# the storescu option that proposes that syntax. Each has its own SOP Instance UID
# but MR_small_RLE.dcm, which shares MR_small_jpeg_ls_lossless.dcm's: it is sent
# under a new one (nothing else changed).
ODD_FILES = [
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50", "-xy"),  # JPEG baseline
    ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51", "-xx"),  # JPEG extended
    ("SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70", "-xs"),  # JPEG lossless SV1
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", "-xt"),  # JPEG-LS lossless
    ("examples_jpeg2k.dcm", "1.2.840.10008.1.2.4.90", "-xv"),  # JPEG 2000 lossless
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", "-xw"),  # JPEG 2000
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5", "-xr"),  # RLE lossless
    ("image_dfl.dcm", "1.2.840.10008.1.2.1.99", "-xd"),  # deflated explicit VR little endian
    ("SC_rgb_small_odd_big_endian.dcm", "1.2.840.10008.1.2.2", "-xb"),  # explicit VR big endian
    ("rtplan.dcm", "1.2.840.10008.1.2", "-xi"),  # implicit VR little endian
]


def pydicom_file(name, directory):
    matches = [p for p in pydicom_test_files() if os.path.basename(p) == name]
    assert matches, f"{name} is not shipped with this pydicom"
    if name != "MR_small_RLE.dcm":
        return matches[0]
    dataset = pydicom.dcmread(matches[0])
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = uid("store", name)
    path = directory / name
    dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("name, syntax, option", ODD_FILES, ids=[f[0] for f in ODD_FILES])
def test_storescu_file_is_stored_in_its_own_transfer_syntax(node, tmp_path, name, syntax, option):
    server, listener = node
    path = pydicom_file(name, tmp_path)
    original = pydicom.dcmread(path)
    assert original.file_meta.TransferSyntaxUID == syntax
    result = dcmtk("storescu", "-v", "-R", option, "-aec", listener.ae_title, "127.0.0.1", listener.port, path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = server.sql("SELECT transfer_syntax_uid, public_id FROM instance WHERE sop_instance_uid = %s",
                      [original.SOPInstanceUID])
    assert [row[0] for row in rows] == [syntax]
    stored = stored_dataset(server, rows[0][1])
    assert stored.file_meta.TransferSyntaxUID == syntax
    if "PixelData" in original:  # the (compressed) pixel data as the modality encoded it
        assert stored.PixelData == original.PixelData
    assert stored.SOPInstanceUID == original.SOPInstanceUID


def test_c_store_without_sop_instance_uid_is_refused_and_nothing_is_stored(node, tmp_path, monkeypatch):
    server, listener = node
    sop_uid = uid("store", "no-sop-instance-uid")
    path = tmp_path / "no-sop.dcm"
    # The file meta names the instance (the C-STORE request needs it); the dataset does not.
    path.write_bytes(make_instance(patient_id="STORE-NOSOP", sop_uid=sop_uid, omit=("SOPInstanceUID",)))
    assert "SOPInstanceUID" not in pydicom.dcmread(path)
    files_before = len(server.storage_files())
    # Sent from the file as it is: pynetdicom would refuse a Dataset without the UID.
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    with association(listener.port, [(CTImageStorage, [ExplicitVRLittleEndian])], calling="PYSTORE") as assoc:
        status = assoc.send_c_store(path)
    assert status is not None, "no C-STORE response"
    assert 0xC000 <= status.Status <= 0xCFFF, hex(status.Status)
    assert "SOPInstanceUID" in str(status.get("ErrorComment", ""))
    assert server.sql("SELECT count(*) FROM instance WHERE sop_instance_uid = %s", [sop_uid]) == [(0,)]
    assert server.sql("SELECT count(*) FROM patient WHERE patient_id = 'STORE-NOSOP'") == [(0,)]
    assert len(server.storage_files()) == files_before
    assert server.temporary_files() == []


def test_same_instance_sent_twice_succeeds_twice_and_is_stored_once(node):
    server, listener = node
    sop_uid = uid("store", "twice")
    dataset = pydicom.dcmread(pydicom.filebase.DicomBytesIO(make_instance(patient_id="STORE-TWICE", sop_uid=sop_uid)))
    files_before = len(server.storage_files())
    with association(listener.port, [CTImageStorage], calling="PYSTORE") as assoc:
        first = assoc.send_c_store(dataset, msg_id=1)
    with association(listener.port, [CTImageStorage], calling="PYSTORE2") as assoc:
        second = assoc.send_c_store(dataset, msg_id=1)
    assert (first.Status, second.Status) == (0x0000, 0x0000)
    assert server.sql("SELECT count(*) FROM instance WHERE sop_instance_uid = %s", [sop_uid]) == [(1,)]
    # The first sender is the one recorded; the second changed nothing.
    assert server.sql("SELECT remote_aet FROM instance WHERE sop_instance_uid = %s", [sop_uid]) == [("PYSTORE",)]
    assert len(server.storage_files()) == files_before + 1
    assert server.temporary_files() == []
