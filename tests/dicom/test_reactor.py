"""The listener's associations wait for their work (dicom/reactor.py): an idle one
does not wake its threads a thousand times a second, and an ended one leaves no
socket behind. pynetdicom's logging handlers are bound only when its log shows them."""

import os
import time

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.dicom.conftest import TIMEOUT, association
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def listener(module_node):
    # Checking the called AE title gives a rejected association to count too.
    return module_node.listener(module_node.server(), PACS_DICOM_CHECK_CALLED_AET="true")


def _tasks(pid):
    return os.listdir(f"/proc/{pid}/task")


def _wakeups(pid):
    """Voluntary context switches of every thread of the process: how often its
    threads went to sleep (a polling thread does so at each poll)."""
    total = 0
    for task in _tasks(pid):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("voluntary_ctxt_switches"))
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            pass
    return total


def _open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_an_idle_association_sleeps(listener):
    pid = listener.process.pid
    with association(listener.port, [Verification], calling="IDLE") as assoc:
        assert assoc.send_c_echo().Status == 0x0000
        idle_before = _wakeups(pid)
        time.sleep(1.0)
        idle = _wakeups(pid) - idle_before
        # Its two threads polled every millisecond: over 2,000 sleeps a second. Waiting
        # for work, each wakes only to look at its timers (every dicom.reactor.WAIT s).
        assert idle < 300, f"{idle} wake-ups of the listener's threads in a second with an idle association"
        # ... and it still answers at once.
        assert [assoc.send_c_echo(msg_id=n).Status for n in range(2, 12)] == [0x0000] * 10


def test_ended_associations_leave_no_socket_or_thread(listener):
    pid = listener.process.pid
    threads = len(_tasks(pid))
    with association(listener.port, [Verification], calling="WARMUP") as assoc:
        assert assoc.send_c_echo().Status == 0x0000
    wait_for(lambda: len(_tasks(pid)) <= threads, timeout=15, what="the warm-up association's end")
    files = _open_files(pid)  # with what a first association opens for good (a database connection)
    for n in range(10):
        with association(listener.port, [Verification], calling=f"ECHO{n}") as assoc:
            assert assoc.send_c_echo().Status == 0x0000
    for n in range(3):  # aborted by the peer
        with association(listener.port, [Verification], calling=f"ABORT{n}") as assoc:
            assoc.abort()
    ae = AE(ae_title="WRONGAE")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = TIMEOUT
    refused = ae.associate("127.0.0.1", listener.port, ae_title="NOTPACSWEB")  # rejected: not our AE title
    assert not refused.is_established
    wait_for(lambda: len(_tasks(pid)) <= threads and _open_files(pid) <= files, timeout=15,
             what=f"the listener back to {threads} threads and {files} open files")


def test_pynetdicom_logs_its_messages_only_when_its_level_lets_them_through(module_node, listener):
    verbose = module_node.listener(listener.server, PACS_DICOM_LOG_LEVEL="INFO")
    for each in (listener, verbose):
        with association(each.port, [Verification], calling="LOGGED") as assoc:
            assert assoc.send_c_echo(msg_id=42).Status == 0x0000
    wait_for(lambda: "Received Echo Request (MsgID 42)" in verbose.output(), timeout=10,
             what="pynetdicom's INFO line in the verbose listener's log")
    assert "Received Echo Request" not in listener.output()
