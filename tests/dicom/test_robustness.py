"""Bad peers do not take the listener down; SIGTERM stops it cleanly."""

import io
import random
import signal
import socket
import subprocess
import time

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import CTImageStorage, Verification

from tests import servers
from tests.dicomgen import make_instance, uid
from tests.dicom.conftest import LISTENER_DEFAULTS, association, fast_stop
from tests.waiting import wait_for, wait_seconds_passed


def echo_succeeds(port, calling="AFTERWARDS"):
    with association(port, [Verification], calling=calling) as assoc:
        status = assoc.send_c_echo()
    return status is not None and status.Status == 0x0000


def send_raw(port, payload, listen=1.0):
    """Send bytes on a fresh TCP connection, take what the listener answers within
    `listen` seconds (until it closes), hang up; return the answer."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        sock.settimeout(listen)
        try:
            while listen and (chunk := sock.recv(4096)):
                answer += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return answer


# --- garbage on the wire ------------------------------------------------------------

GARBAGE = {
    "random bytes": random.Random(20261122).randbytes(4096),
    "an HTTP request": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "an unknown PDU type": b"\x55\x00\x00\x00\x00\x04garb",
    "an A-ASSOCIATE-RQ cut short": b"\x01\x00\x00\x00\x00\x44\x00\x01\x00\x00PACSWEB",
}


@pytest.mark.parametrize("name", GARBAGE, ids=list(GARBAGE))
def test_garbage_bytes_do_not_take_the_listener_down(listener, name):
    answer = send_raw(listener.port, GARBAGE[name])
    # Nothing but A-ABORT PDUs (type 07), or silence.
    assert answer[::10] == b"\x07" * len(answer[::10]) and len(answer) % 10 == 0, answer[:20]
    assert listener.process.poll() is None, listener.output()[-2000:]
    assert echo_succeeds(listener.port)


def test_an_association_flood_is_shed_and_the_listener_serves_again(server, listener_factory):
    listener = listener_factory(server, PACS_DICOM_MAX_ASSOCIATIONS=8, PACS_DICOM_TIMEOUT=2)
    request = GARBAGE["an A-ASSOCIATE-RQ cut short"]
    flood = []
    try:
        # Three times the associations it takes: silent connections and requests cut short, held open.
        for n in range(24):
            connection = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
            if n % 2:
                connection.sendall(request)
            flood.append(connection)
        # The listener drops what stays silent past PACS_DICOM_TIMEOUT (or refuses what
        # exceeds its limit): every flooding connection is closed by it, none is left hanging.
        deadline = time.monotonic() + 30
        for connection in flood:
            connection.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                while connection.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        assert listener.process.poll() is None, listener.output()[-2000:]
        assert echo_succeeds(listener.port)
    finally:
        for connection in flood:
            connection.close()


def partial_store(assoc, dataset, fraction=0.5):
    """Send the C-STORE-RQ command and the first `fraction` of the dataset's P-DATA,
    no more; return once all of it is on the connection, ahead of whatever the
    test does next (its own thread sends what the association queues)."""
    context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == CTImageStorage)
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = CTImageStorage
    request.AffectedSOPInstanceUID = dataset.SOPInstanceUID
    request.Priority = 2
    request.DataSet = io.BytesIO(encode(dataset, False, True))
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    fragments = list(message.encode_msg(context.context_id, 16384))
    sent = []
    assoc.bind(evt.EVT_PDU_SENT, lambda event: sent.append(event))
    part = fragments[: int(len(fragments) * fraction)]
    for fragment in part:
        assoc.dul.send_pdu(fragment)
    wait_for(lambda: len(sent) >= len(part), what=f"{len(part)} P-DATA PDUs sent")
    return len(fragments)


def test_association_aborted_mid_store_stores_nothing_and_listener_keeps_serving(listener, server):
    sop_uid = uid("robustness", "aborted")
    data = make_instance(patient_id="ROBUST-ABORT", sop_uid=sop_uid, rows=512, columns=512)  # 512 KB of pixels
    dataset = pydicom.dcmread(io.BytesIO(data))
    ae = AE(ae_title="ABORTER")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", listener.port)
    assert assoc.is_established
    assert partial_store(assoc, dataset) > 10  # the half message is on the wire, the A-ABORT after it
    assoc.abort()

    assert listener.process.poll() is None, listener.output()[-2000:]
    assert echo_succeeds(listener.port)
    assert server.sql("SELECT count(*) FROM instance WHERE sop_instance_uid = %s", [sop_uid]) == [(0,)]
    assert server.storage_files() == []
    assert server.temporary_files() == []
    # The same instance, sent whole afterwards, is stored.
    with association(listener.port, [(CTImageStorage, [ExplicitVRLittleEndian])], calling="ABORTER") as again:
        assert again.send_c_store(dataset).Status == 0x0000
    assert server.sql("SELECT count(*) FROM instance WHERE sop_instance_uid = %s", [sop_uid]) == [(1,)]


def test_connection_dropped_mid_store_stores_nothing_and_listener_keeps_serving(listener, server):
    sop_uid = uid("robustness", "dropped")
    dataset = pydicom.dcmread(io.BytesIO(make_instance(patient_id="ROBUST-DROP", sop_uid=sop_uid, rows=512, columns=512)))
    ae = AE(ae_title="DROPPER")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", listener.port)
    assert assoc.is_established
    partial_store(assoc, dataset)  # the half message is on the wire, the end of the connection after it
    assoc.dul.socket.socket.shutdown(socket.SHUT_RDWR)  # no A-ABORT: the TCP connection just ends
    assoc.abort()
    assert listener.process.poll() is None, listener.output()[-2000:]
    assert echo_succeeds(listener.port)
    assert server.sql("SELECT count(*) FROM instance WHERE sop_instance_uid = %s", [sop_uid]) == [(0,)]
    assert server.temporary_files() == []


# --- SIGTERM -------------------------------------------------------------------------


def wait_exit(listener, timeout):
    """The exit code within `timeout` seconds, or None (the listener is then killed)."""
    try:
        return listener.process.wait(timeout)
    except subprocess.TimeoutExpired:
        fast_stop(listener, grace=0)
        return None


def refuses_connections(port):
    """True once a TCP connection to the port is refused."""
    return wait_for(lambda: not servers.accepts_connections(port), what=f"port {port} refusing connections")


def test_sigterm_when_idle_exits_0_within_seconds(server, listener_factory):
    # An idle listener must exit at once, not after PACS_DICOM_TIMEOUT.
    listener = listener_factory(server, PACS_DICOM_TIMEOUT=3, **LISTENER_DEFAULTS)
    up = time.monotonic()
    try:
        assert echo_succeeds(listener.port)
        # Idle for longer than its PACS_DICOM_TIMEOUT (3 s): time itself is the condition.
        wait_seconds_passed(up, 4)
        listener.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert wait_exit(listener, 2) == 0, listener.output()[-2000:]
        assert time.monotonic() - sent < 2
    finally:
        fast_stop(listener)
    assert "DICOM listener stopped" in listener.output()
    assert refuses_connections(listener.port)


def test_sigterm_lets_a_running_association_finish_then_exits_0(server, listener_factory):
    listener = listener_factory(server, PACS_DICOM_TIMEOUT=5, **LISTENER_DEFAULTS)
    try:
        with association(listener.port, [Verification], calling="RUNNING") as assoc:
            listener.process.send_signal(signal.SIGTERM)
            assert refuses_connections(listener.port), "the port still accepts connections after SIGTERM"
            assert listener.process.poll() is None
            assert assoc.send_c_echo().Status == 0x0000  # the running association is still served
        released = time.monotonic()
        # Gone once the association is released (within the PACS_DICOM_TIMEOUT bound).
        assert wait_exit(listener, 6) == 0, listener.output()[-2000:]
        assert time.monotonic() - released < 6
    finally:
        fast_stop(listener)


def test_sigterm_after_a_tcp_probe_exits_within_seconds(server, listener_factory):
    listener = listener_factory(server, **LISTENER_DEFAULTS)  # PACS_DICOM_TIMEOUT: 30 s, the default
    try:
        send_raw(listener.port, b"", listen=0)  # what a load balancer's health check does
        assert echo_succeeds(listener.port)
        listener.process.send_signal(signal.SIGTERM)
        assert wait_exit(listener, 5) == 0
    finally:
        fast_stop(listener)


# --- database connections ------------------------------------------------------------


def test_more_associations_than_the_pool_size_are_served_promptly(server, listener_factory):
    listener = listener_factory(server)  # the default PACS_DB_POOL_SIZE (4)
    sop_uids = [uid("robustness", "pool", n) for n in range(6)]
    try:
        timings = []
        for n, sop_uid in enumerate(sop_uids):
            dataset = pydicom.dcmread(io.BytesIO(make_instance(patient_id="ROBUST-POOL", sop_uid=sop_uid,
                                                               instance_number=n + 1, rows=8, columns=8)))
            ae = AE(ae_title=f"MODALITY{n}")  # six modalities, one association each
            ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
            ae.acse_timeout = ae.network_timeout = 10
            ae.dimse_timeout = 3  # a store takes milliseconds; the pool's timeout is 30 s
            assoc = ae.associate("127.0.0.1", listener.port)
            assert assoc.is_established
            began = time.monotonic()
            status = assoc.send_c_store(dataset)
            timings.append(round(time.monotonic() - began, 2))
            if assoc.is_established:
                assoc.release()
            assert status.get("Status") == 0x0000, f"association {n + 1}: no Success within 3 s; timings {timings}"
        assert server.sql("SELECT count(*) FROM instance WHERE sop_instance_uid = ANY(%s)", [sop_uids]) == [(6,)]
    finally:
        fast_stop(listener, grace=0)
