"""Who may do what: the modality table and PACS_DICOM_ALWAYS_ALLOW_ECHO/STORE."""

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from tests.dicomgen import make_instance, uid
from tests.dicom.conftest import TIMEOUT, association, dcmtk, post_instance

STUDY_UID = uid("access", "study")
MODALITIES = {
    # Known, but may not query, retrieve or store.
    "limited": {"AET": "LIMITED", "Host": "127.0.0.1", "Port": 11119, "AllowFind": False, "AllowMove": False,
                "AllowGet": False, "AllowStore": False},
    "trusted": ["TRUSTED", "127.0.0.1", 11120],  # every Allow* defaults to true
}
FIND = StudyRootQueryRetrieveInformationModelFind


@pytest.fixture(scope="module")
def server(module_node):
    server = module_node.server()
    post_instance(server, make_instance(patient_id="ACCESS-1", study_uid=STUDY_UID))
    return server


@pytest.fixture(scope="module")
def strict(module_node, server):
    """A listener that lets no unknown AE in."""
    return module_node.listener(server, modalities=MODALITIES, PACS_DICOM_ALWAYS_ALLOW_ECHO="false",
                                PACS_DICOM_ALWAYS_ALLOW_STORE="false")


@pytest.fixture(scope="module")
def default(module_node, server):
    """A listener with the default settings (unknown AEs may echo and store)."""
    return module_node.listener(server, modalities=MODALITIES)


def study_query():
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = STUDY_UID
    query.PatientID = ""
    return query


def find_statuses(port, calling):
    with association(port, [FIND], calling=calling) as assoc:
        responses = list(assoc.send_c_find(study_query(), FIND))
    assert all(status is not None for status, _ in responses), "no C-FIND response within the timeout"
    return [status.Status for status, _ in responses], [answer for _, answer in responses if answer is not None]


def echo_status(port, calling):
    with association(port, [Verification], calling=calling) as assoc:
        status = assoc.send_c_echo()
    assert status is not None, "no C-ECHO response"
    return status.Status


# --- PACS_DICOM_ALWAYS_ALLOW_ECHO=false and PACS_DICOM_ALWAYS_ALLOW_STORE=false -----------


def test_strict_listener_rejects_the_association_of_an_unknown_ae_from_echoscu(strict):
    result = dcmtk("echoscu", "-v", "-aet", "STRANGER", "127.0.0.1", strict.port)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Association Rejected" in output


def test_strict_listener_rejects_the_association_of_an_unknown_ae_from_pynetdicom(strict):
    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = TIMEOUT
    assoc = ae.associate("127.0.0.1", strict.port)
    assert assoc.is_rejected and not assoc.is_established
    answer = assoc.acceptor.primitive
    # Rejected permanent, by the service user, calling AE title not recognized (PS3.8 §9.3.4).
    assert (answer.result, answer.result_source, answer.diagnostic) == (0x01, 0x01, 0x03)


def test_strict_listener_stores_nothing_from_an_unknown_ae(strict, server, tmp_path):
    path = tmp_path / "unknown.dcm"
    path.write_bytes(make_instance(patient_id="ACCESS-STRANGER", study_uid=uid("access", "stranger")))
    result = dcmtk("storescu", "-aet", "STRANGER", "127.0.0.1", strict.port, path)
    assert result.returncode != 0
    assert server.sql("SELECT count(*) FROM patient WHERE patient_id = 'ACCESS-STRANGER'") == [(0,)]


def test_strict_listener_lets_a_known_ae_in(strict):
    assert echo_status(strict.port, "TRUSTED") == 0x0000
    statuses, answers = find_statuses(strict.port, "TRUSTED")
    assert statuses == [0xFF00, 0x0000]
    assert answers[0].StudyInstanceUID == STUDY_UID


# --- the Allow* flags of a known AE -----------------------------------------------------


def test_known_ae_without_allow_find_gets_0x0124_for_find_but_may_echo(default):
    statuses, answers = find_statuses(default.port, "LIMITED")
    assert statuses == [0x0124]
    assert answers == []
    assert echo_status(default.port, "LIMITED") == 0x0000


def test_known_ae_without_allow_store_gets_0x0124_and_nothing_is_stored(default, server):
    sop_uid = uid("access", "limited-store")
    dataset = pydicom.dcmread(pydicom.filebase.DicomBytesIO(
        make_instance(patient_id="ACCESS-LIMITED", study_uid=uid("access", "limited"), sop_uid=sop_uid)))
    with association(default.port, [CTImageStorage], calling="LIMITED") as assoc:
        status = assoc.send_c_store(dataset)
    assert status.Status == 0x0124
    assert server.sql("SELECT count(*) FROM instance WHERE sop_instance_uid = %s", [sop_uid]) == [(0,)]


def test_known_ae_without_allow_move_gets_a_failure_and_no_sub_operation(default):
    model = StudyRootQueryRetrieveInformationModelMove
    with association(default.port, [model], calling="LIMITED") as assoc:
        responses = list(assoc.send_c_move(study_query(), "TRUSTED", model))
    statuses = [status.Status for status, _ in responses]
    assert statuses and statuses[-1] in (0x0124, 0xA801), [hex(s) for s in statuses]
    assert 0xFF00 not in statuses
    assert responses[-1][0].get("NumberOfCompletedSuboperations", 0) == 0


def test_known_ae_without_allow_get_gets_a_failure_and_no_instance(default):
    model = StudyRootQueryRetrieveInformationModelGet
    received = []
    ae = AE(ae_title="LIMITED")
    ae.add_requested_context(model)
    ae.add_requested_context(CTImageStorage)
    handlers = [(evt.EVT_C_STORE, lambda event: received.append(event.dataset) or 0x0000)]
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    assoc = ae.associate("127.0.0.1", default.port, ae_title="PACSWEB", ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=handlers)
    try:
        assert assoc.is_established
        responses = list(assoc.send_c_get(study_query(), model))
    finally:
        assoc.release()
    statuses = [status.Status for status, _ in responses]
    assert received == []
    # Refused: a failure status, not "Success, 0 sub-operations".
    assert statuses and statuses[-1] not in (0x0000, 0xFF00), [hex(s) for s in statuses]


# --- the defaults for an unknown AE -------------------------------------------------------


def test_unknown_ae_find_is_refused_with_the_default_settings(default):
    statuses, answers = find_statuses(default.port, "STRANGER")
    assert statuses == [0x0124]
    assert answers == []


def test_unknown_ae_may_echo_and_store_with_the_default_settings(default, server):
    assert echo_status(default.port, "STRANGER") == 0x0000
    sop_uid = uid("access", "stranger-store")
    dataset = pydicom.dcmread(pydicom.filebase.DicomBytesIO(
        make_instance(patient_id="ACCESS-STRANGER2", study_uid=uid("access", "stranger2"), sop_uid=sop_uid)))
    with association(default.port, [CTImageStorage], calling="STRANGER") as assoc:
        assert assoc.send_c_store(dataset).Status == 0x0000
    assert server.sql("SELECT remote_aet FROM instance WHERE sop_instance_uid = %s", [sop_uid]) == [("STRANGER",)]
