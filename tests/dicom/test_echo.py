"""C-ECHO: the listener answers DCMTK's echoscu and pynetdicom."""

import pytest
from pynetdicom.sop_class import Verification

from tests.dicom.conftest import association, dcmtk


@pytest.fixture(scope="module")
def listener(module_node):
    return module_node.listener(module_node.server())


def test_echoscu_gets_success(listener):
    result = dcmtk("echoscu", "-v", "-aet", "ECHOSCU", "-aec", listener.ae_title, "127.0.0.1", listener.port)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Echo Response (Success)" in result.stdout + result.stderr


def test_pynetdicom_c_echo_gets_success(listener):
    with association(listener.port, [Verification], calling="PYECHO") as assoc:
        status = assoc.send_c_echo()
    assert status is not None, "no C-ECHO response"
    assert status.Status == 0x0000


def test_several_echoes_on_one_association_all_succeed(listener):
    with association(listener.port, [Verification], calling="PYECHO") as assoc:
        statuses = [assoc.send_c_echo(msg_id=n).Status for n in range(1, 6)]
    assert statuses == [0x0000] * 5
