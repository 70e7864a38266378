"""The web worker (pacsweb/webworker.py): a thread that has answered a kept-alive
connection serves that client's next request itself when its head arrives whole
within PACS_HTTP_LINGER_MS, and never waits on a head that has not."""

import http.client
import io
import json
import socket
import ssl
import threading
import time
import types

import pytest

from pacsweb.webworker import HeadFirstWorker
from tests import servers
from tests.dicomgen import make_instance, uid

HEAD = b"GET /statistics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def worker(linger_ms=200.0, queued=0, alive=True):
    made = HeadFirstWorker.__new__(HeadFirstWorker)  # the decision alone: no process, no sockets of its own
    made.linger_ms, made.queued, made.alive = linger_ms, queued, alive
    return made


def connection(sock, buffered=b""):
    """What the decision reads of a connection: its socket and what its parser holds."""
    return types.SimpleNamespace(sock=sock, parser=types.SimpleNamespace(
        unreader=types.SimpleNamespace(buf=io.BytesIO(buffered))))


@pytest.fixture
def pair():
    server_side, client_side = socket.socketpair()
    yield server_side, client_side
    server_side.close()
    client_side.close()


def timed(function, *args):
    started = time.monotonic()
    return function(*args), time.monotonic() - started


def test_a_whole_head_that_arrives_while_waiting_is_served_and_left_for_the_parser(pair):
    server_side, client_side = pair
    threading.Timer(0.02, client_side.sendall, [HEAD]).start()
    arrived, took = timed(worker()._next_head_arrived, connection(server_side))
    assert arrived and took < 0.15
    assert server_side.recv(len(HEAD) + 10) == HEAD  # looked at, not read


def test_leading_empty_lines_before_a_head_are_allowed(pair):
    server_side, client_side = pair
    client_side.sendall(b"\r\n" + HEAD)
    assert worker()._next_head_arrived(connection(server_side))


@pytest.mark.parametrize("partial", [b"G", b"GET /statistics HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
def test_a_head_that_has_not_arrived_whole_goes_back_to_the_event_loop_at_once(pair, partial):
    server_side, client_side = pair
    client_side.sendall(partial)
    arrived, took = timed(worker(linger_ms=5000)._next_head_arrived, connection(server_side))
    assert not arrived and took < 1
    assert server_side.recv(100) == partial


def test_nothing_within_the_linger_time_frees_the_thread(pair):
    server_side, _ = pair
    arrived, took = timed(worker(linger_ms=50)._next_head_arrived, connection(server_side))
    assert not arrived and 0.04 < took < 1


@pytest.mark.parametrize("case", ["queued", "stopping", "off", "buffered", "closed"])
def test_no_waiting_when_other_work_is_queued_the_worker_stops_or_the_client_left(pair, case):
    server_side, client_side = pair
    made = worker(linger_ms=5000, queued=1 if case == "queued" else 0, alive=case != "stopping")
    if case == "off":
        made.linger_ms = 0
    if case == "closed":
        client_side.close()
    else:
        client_side.sendall(HEAD)
    # A pipelined request the parser already read is the event loop's (gunicorn's own path).
    conn = connection(server_side, buffered=HEAD if case == "buffered" else b"")
    arrived, took = timed(made._next_head_arrived, conn)
    assert not arrived and took < 1


def test_a_tls_connection_is_left_to_the_event_loop(pair):
    server_side, client_side = pair
    client_side.sendall(HEAD)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    wrapped = context.wrap_socket(server_side, do_handshake_on_connect=False)
    arrived, took = timed(worker(linger_ms=5000)._next_head_arrived, connection(wrapped))
    assert not arrived and took < 1


# --- through a running server ---------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    # Two threads: a thread held by any client below would show in the others' waits.
    server = servers.Server(tmp_path_factory.mktemp("webworker") / "node", workers=1, threads=2,
                            PACS_HTTP_LINGER_MS=200, PACS_HTTP_HEADER_TIMEOUT=2)
    yield server
    server.stop()


def read_response(stream):
    """(status, headers, body) of the next response on a buffered socket reader."""
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, stream.read(int(headers.get("content-length", 0)))


def test_requests_one_after_another_on_one_connection_are_all_answered_on_it(node):
    client = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    headers = {"Authorization": servers.auth_header()}
    stored = []
    for n in range(20):
        data = make_instance(patient_id="LINGER", sop_uid=uid("linger", n), instance_number=n + 1)
        client.request("POST", "/instances", body=data, headers={**headers, "Content-Type": "application/dicom"})
        answer = client.getresponse()
        assert answer.status == 200
        instance = json.loads(answer.read())["ID"]
        if n == 0:
            local = client.sock.getsockname()
        client.request("GET", f"/instances/{instance}/file", headers=headers)
        answer = client.getresponse()
        assert answer.status == 200 and answer.read() == data
        assert client.sock is not None and client.sock.getsockname() == local  # never reconnected
        stored.append(instance)
    client.close()
    assert len(set(stored)) == 20


def test_pipelined_requests_are_answered_in_order(node):
    data = make_instance(patient_id="PIPELINED", sop_uid=uid("pipelined", 1))
    authorization = servers.auth_header()
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=30)
    with sock, sock.makefile("rb") as stream:
        sock.sendall(
            f"POST /instances HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n"
            f"Content-Type: application/dicom\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data
            + f"GET /patients?expand HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n\r\n".encode()
            + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, body = read_response(stream)
        assert status == 200 and json.loads(body)["Status"] == "Success"
        status, _, body = read_response(stream)
        assert status == 200
        assert any(p["MainDicomTags"]["PatientID"] == "PIPELINED" for p in json.loads(body))
        status, _, _ = read_response(stream)
        assert status == 200


def test_a_kept_alive_client_that_stalls_in_its_next_head_holds_no_thread(node):
    authorization = servers.auth_header()
    stalled = []
    # Twice as many clients as threads, each starting its next head within the linger
    # time of its answer and stopping in the middle of it.
    for _ in range(4):
        sock = socket.create_connection(("127.0.0.1", node.port), timeout=30)
        stream = sock.makefile("rb")
        sock.sendall(f"GET /statistics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n\r\n"
                     .encode())
        assert read_response(stream)[0] == 200
        sock.sendall(b"GET /statistics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        stalled.append((sock, stream))
    started = time.monotonic()
    status, _ = servers.request_json(node.url + "/statistics", timeout=30)
    assert status == 200 and time.monotonic() - started < 1.5
    for sock, stream in stalled:
        # The event loop's deadline for a head answers it, not a thread's read.
        status, _, body = read_response(stream)
        assert status == 408 and b"PACS_HTTP_HEADER_TIMEOUT" in body
        stream.close()
        sock.close()
