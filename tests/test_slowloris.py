"""Slow clients cannot starve anyone: while 30 connections trickle HTTP request
heads and 200 trickle DICOM association requests (a byte a second), a normal
client stores and reads with a p95 under 2 s, straight to the node and through the
shipped HAProxy configuration (cluster/balancer.py)."""

import socket
import threading
import time

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from pydicom.uid import ExplicitVRLittleEndian

from cluster import balancer
from tests import servers
from tests.dicomgen import make_instance, uid
from tests.waiting import wait_for

HTTP_HEAD = b"GET /statistics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000
# An A-ASSOCIATE-RQ's header announcing 200 bytes that never come whole.
ASSOCIATE_RQ = b"\x01\x00\x00\x00\x00\xc8" + b"\x00\x01\x00\x00" + b"A" * 190


class Tricklers:
    """`count` connections to `port`, each sending the next byte of `data` every
    `interval` seconds, reconnecting when the server closes them; a count of the
    connections the server closed."""

    def __init__(self, port, count, data, interval=1.0):
        self.port, self.count, self.data, self.interval = port, count, data, interval
        self.closed = 0
        self.rounds = 0  # times every connection has been sent its next byte
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _connect(self):
        try:
            return [socket.create_connection(("127.0.0.1", self.port), timeout=0.5), 0]
        except OSError:
            return None

    def _run(self):
        connections = [self._connect() for _ in range(self.count)]
        while not self.stop.wait(self.interval):
            for i, entry in enumerate(connections):
                if self.stop.is_set():
                    break
                if entry is None:
                    connections[i] = self._connect()
                    continue
                connection, sent = entry
                try:
                    connection.send(self.data[sent % len(self.data):sent % len(self.data) + 1])
                    entry[1] += 1
                except OSError:
                    self.closed += 1
                    connection.close()
                    connections[i] = self._connect()
            self.rounds += 1
        for entry in connections:
            if entry:
                entry[0].close()

    def end(self):
        self.stop.set()
        self.thread.join(10)


def p95(durations):
    return sorted(durations)[int(len(durations) * 0.95) - 1 if len(durations) > 1 else 0]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    directory = tmp_path_factory.mktemp("slowloris")
    server = servers.Server(directory / "node", workers=1, threads=4, PACS_HTTP_HEADER_TIMEOUT=5)
    listener = servers.Listener(server, PACS_DICOM_MAX_ASSOCIATIONS=16, PACS_DICOM_ASSOCIATE_TIMEOUT=3)
    http_port, dicom_port = servers.free_port(), servers.free_port()
    config = directory / "haproxy.cfg"
    config.write_text(balancer.config([balancer.Backend("node1", "127.0.0.1", server.port, listener.port)],
                                      http_port, dicom_port))
    haproxy = balancer.start(config, open(directory / "haproxy.log", "w"))
    wait_for(lambda: servers.request(f"http://127.0.0.1:{http_port}/readyz", auth=False)[0] == 200,
             what="HAProxy up with its node")
    yield server, listener, http_port, dicom_port
    haproxy.terminate()
    haproxy.wait(10)
    listener.stop()
    server.stop()


def http_client(url, tag, rounds=10):
    durations = []
    for n in range(rounds):
        data = make_instance(patient_id=f"SLOW-{tag}", sop_uid=uid("slow", tag, n), instance_number=n + 1)
        started = time.monotonic()
        status, stored = servers.request_json(url + "/instances", method="POST", body=data, timeout=30)
        assert status == 200, stored
        durations.append(time.monotonic() - started)
        started = time.monotonic()
        status, _, body = servers.request(f"{url}/instances/{stored['ID']}/file", timeout=30)
        assert status == 200 and body == data
        durations.append(time.monotonic() - started)
    return durations


@pytest.mark.parametrize("through", ["node", "haproxy"])
def test_30_trickling_http_clients_do_not_slow_a_normal_one(site, through):
    server, _, http_port, _ = site
    port = server.port if through == "node" else http_port
    tricklers = Tricklers(port, 30, HTTP_HEAD)
    try:
        wait_for(lambda: tricklers.rounds >= 2, what="the trickle under way")
        durations = http_client(f"http://127.0.0.1:{port}", f"http-{through}")
    finally:
        tricklers.end()
    assert p95(durations) < 2.0, durations


def dicom_client(port, tag, bind_address, rounds=10):
    ae = AE(ae_title="NORMAL")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    durations = []
    for n in range(rounds):
        dataset = dcmread(__import__("io").BytesIO(make_instance(
            patient_id=f"SLOW-{tag}", sop_uid=uid("slow", tag, n), instance_number=n + 1)))
        started = time.monotonic()
        assoc = ae.associate("127.0.0.1", port, ae_title="PACSWEB", bind_address=bind_address)
        assert assoc.is_established, f"association {n} refused"
        status = assoc.send_c_store(dataset)
        assoc.release()
        durations.append(time.monotonic() - started)
        assert status.Status == 0x0000
    return durations


@pytest.mark.parametrize("through", ["node", "haproxy"])
def test_200_trickling_association_requests_do_not_refuse_a_normal_one(site, through):
    _, listener, _, dicom_port = site
    port = listener.port if through == "node" else dicom_port
    tricklers = Tricklers(port, 200, ASSOCIATE_RQ)
    try:
        wait_for(lambda: tricklers.rounds >= 2, what="the trickle under way")
        # Straight to the node, the modality has an address of its own (the trickling
        # ones are capped per address); through HAProxy every association comes from it.
        durations = dicom_client(port, f"dicom-{through}", ("127.0.0.2", 0) if through == "node" else ("", 0))
    finally:
        tricklers.end()
    assert p95(durations) < 2.0, durations
    # The trickling address gets its half-open slots back within PACS_DICOM_ASSOCIATE_TIMEOUT.
    wait_for(lambda: _associates(port), timeout=20, what="an association from the trickling address")


def _associates(port):
    ae = AE(ae_title="AFTER")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSWEB")
    established = assoc.is_established
    if established:
        assoc.release()
    return established
