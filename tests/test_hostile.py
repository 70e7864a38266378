"""Hostile input through REST, STOW-RS and C-STORE: each refused with a reason, and
the index and the storage exactly as before. Then mutated files, at random."""

import hashlib
import json
import os
import socket
import time
import uuid

import pydicom
import pydicom.errors
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage
from pydicom.uid import ExplicitVRLittleEndian

from tests import hostile, servers
from tests.dicomgen import make_instance, uid


def snapshot(server):
    statistics = servers.request_json(server.url + "/statistics")[1]
    files = sorted(hashlib.md5(p.read_bytes()).hexdigest() for p in server.storage_files())
    return statistics["CountInstances"], statistics["CountStudies"], files, server.temporary_files()


def stow(server, data):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return servers.request(server.url + "/dicom-web/studies", method="POST", body=body, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json"})


def raw_c_store(port, part10, directory):
    """C-STORE a file as its bytes are, however broken (pynetdicom sends a file's
    data set without decoding it); the status, or None when the file has no data
    set a C-STORE could carry (not Part 10 at all)."""
    path = directory / f"{uuid.uuid4().hex}.dcm"
    path.write_bytes(part10)
    ae = AE(ae_title="HOSTILE")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", port)
    assert assoc.is_established
    chunked = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # the bytes from the file, not a re-encoding
    try:
        status = assoc.send_c_store(path)
    except (ValueError, AttributeError, EOFError, OSError, KeyError, pydicom.errors.InvalidDicomError):
        return None
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked
        if assoc.is_established:
            assoc.release()
    return getattr(status, "Status", None)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    server = servers.Server(tmp_path_factory.mktemp("hostile") / "node", workers=1)
    listener = servers.Listener(server)
    status, _ = servers.request_json(server.url + "/instances", method="POST", body=hostile.seed())
    assert status == 200
    yield server, listener
    listener.stop()
    server.stop()


@pytest.mark.parametrize("name, data, words", hostile.corpus(), ids=[entry[0] for entry in hostile.corpus()])
def test_hostile_input_is_refused_everywhere_and_changes_nothing(node, name, data, words, tmp_path):
    server, listener = node
    before = snapshot(server)

    status, _, body = servers.request(server.url + "/instances", method="POST", body=data)
    assert status in (400, 409, 413), (status, body[:300])
    details = json.loads(body)["Details"]
    assert words.lower() in details.lower(), details

    status, _, body = stow(server, data)
    assert status in (400, 409), (status, body[:300])

    code = raw_c_store(listener.port, data, tmp_path)
    # A failure status, never success; None when a standard SCU cannot even put the
    # file on the wire (no file meta, a UID pynetdicom refuses to encode).
    assert code is None or code >= 0xA000, hex(code)

    assert snapshot(server) == before
    assert listener.process.poll() is None
    assert servers.request(server.url + "/healthz", auth=False)[0] == 200


BASE = make_instance(patient_id="FUZZ", sop_uid=uid("fuzz", "base"), rows=16, columns=16)


# The same examples in every run, so that CI's verdict does not depend on which files
# chance drew; PACS_FUZZ_RANDOM=1 explores new ones (what found the @example cases).
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          derandomize=not os.environ.get("PACS_FUZZ_RANDOM"))
@given(cuts=st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       truncate=st.one_of(st.none(), st.integers(0, len(BASE))))
@example(cuts=[(163, 0)], truncate=None)  # a NUL in the VR of (0002,0002): pydicom cannot convert it
@example(cuts=[(273, 0)], truncate=None)  # a NUL inside the TransferSyntaxUID
@example(cuts=[(539, 0)], truncate=None)  # a NUL inside an indexed value (Manufacturer)
def test_mutated_files_never_give_500_nor_half_stored_instances(api, storage_dir, cuts, truncate):
    data = bytearray(BASE)
    for position, value in cuts:
        data[position] = value
    data = bytes(data[:truncate] if truncate is not None else data)
    before = api.get("/statistics").json()["CountInstances"]
    response = api.generic("POST", "/instances", data, content_type="application/dicom")
    assert response.status_code in (200, 400, 409), (response.status_code, response.content[:300])
    after = api.get("/statistics").json()["CountInstances"]
    files = [p for p in storage_dir.rglob("*") if p.is_file() and p.parent.name not in ("tmp", "archives")]
    assert len(files) == after  # one file per indexed instance: nothing half-stored
    if response.status_code == 200:
        answer = response.json()
        assert after == before + (answer["Status"] == "Success")
        stored = api.get(f"/instances/{answer['ID']}/file")
        if answer["Status"] == "Success":
            assert b"".join(stored.streaming_content) == data  # stored exactly as received
    else:
        assert after == before
        assert response.json()["Details"]



def test_slow_clients_cannot_hold_the_servers_threads(server_factory):
    server = server_factory("slow", workers=1, threads=2, PACS_CLIENT_TIMEOUT=2, PACS_HTTP_HEADER_TIMEOUT=2)
    before = snapshot(server)
    body = make_instance()
    stalled = []
    # Twice as many slow clients as the server has threads: half never finish their
    # headers, half stop in the middle of a body.
    for i in range(4):
        connection = socket.create_connection(("127.0.0.1", server.port))
        if i % 2:
            connection.sendall(b"GET /statistics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ")
        else:
            connection.sendall(
                f"POST /instances HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {servers.auth_header()}\r\n"
                f"Content-Type: application/dicom\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body[:len(body) // 2])
        stalled.append(connection)
    started = time.monotonic()
    status, statistics = servers.request_json(server.url + "/statistics", timeout=30)
    # Without the timeout the slow clients would hold both threads for as long as they like.
    assert status == 200 and time.monotonic() - started < 15
    answers = []
    for connection in stalled:
        connection.settimeout(15)
        received = b""
        while chunk := connection.recv(65536):  # the server closes: b""
            received += chunk
        answers.append(received)
        connection.close()
    for answer in (answers[1], answers[3]):  # an unfinished head: never given a thread
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        head, _, text = answer.partition(b"\r\n\r\n")
        assert b"PACS_HTTP_HEADER_TIMEOUT" in text and f"Content-Length: {len(text)}\r\n".encode() in head + b"\r\n"
    for answer in (answers[0], answers[2]):
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"PACS_CLIENT_TIMEOUT" in answer
    assert snapshot(server) == before
    assert statistics["CountInstances"] == before[0]
