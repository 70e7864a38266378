"""The HL7 listener driven from outside, as a RIS drives it: the hl7 library's MLLP
client on a real connection to a real listener process, and messages built field
by field (HL7 v2 counts fields from 1; a dict of field number → value keeps the
counting out of the tests)."""

import asyncio
import datetime
import itertools
import json
import os
from dataclasses import dataclass

import hl7
import pytest
from hl7.mllp import open_hl7_connection

from tests import servers

TIMEOUT = 30
_control_ids = itertools.count(1)


@pytest.fixture
def hl7_listener_factory():
    """Start HL7 listener processes for started servers; all stop at the end of the test."""
    started = []

    def start(server, **settings):
        listener = servers.Hl7Listener(server, **settings)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()


class Hl7Client:
    """One MLLP connection made with the hl7 library's asyncio client, driven from a
    synchronous test: each message waits for its acknowledgement."""

    def __init__(self, port):
        self.loop = asyncio.new_event_loop()
        self.reader, self.writer = self._run(open_hl7_connection("127.0.0.1", port))

    def _run(self, coroutine):
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, TIMEOUT))

    def send(self, message, encoding="ascii"):
        """Send one message (text, or bytes as they are) and return its ACK, parsed."""
        data = message if isinstance(message, bytes) else message.encode(encoding)
        self.writer.writeblock(data)
        self._run(self.writer.drain())
        return hl7.parse(self._run(self.reader.readblock()).decode(encoding))

    def send_raw(self, data):
        """Bytes on the connection as they are, MLLP framing included or not."""
        self.writer.write(data)
        self._run(self.writer.drain())

    def close(self):
        self.writer.close()
        try:
            self._run(self.writer.wait_closed())
        except (ConnectionError, OSError):
            pass
        self.loop.close()


@pytest.fixture
def hl7_client():
    """hl7_client(port) → an open Hl7Client; all are closed at the end of the test."""
    clients = []

    def connect(port):
        client = Hl7Client(port)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


# --- messages ---------------------------------------------------------------------


def today():
    return datetime.date.today().strftime("%Y%m%d")


def segment(name, fields):
    """A segment from {field number: value}."""
    return name + "|" + "|".join(fields.get(n, "") for n in range(1, max(fields) + 1))


def msh(message_type, control_id=None, charset="", version="2.3.1"):
    """MSH: MSH-1 is the "|" after MSH, so MSH-n is the (n-1)th value after it."""
    control_id = control_id or f"MSG{next(_control_ids):05d}"
    fields = {2: "^~\\&", 3: "RIS", 4: "HOSPITAL", 5: "PACSWEB", 6: "HOSPITAL",
              7: datetime.datetime.now().strftime("%Y%m%d%H%M%S"), 9: message_type, 10: control_id,
              11: "P", 12: version, 18: charset}
    return "MSH|" + "|".join(fields.get(n, "") for n in range(2, 19)).rstrip("|")


def pid(patient_id, name, birth_date="19700101", sex="M"):
    return segment("PID", {1: "1", 3: f"{patient_id}^^^HOSPITAL", 5: name, 7: birth_date, 8: sex})


def orm(control="NW", placer="PO-1", step="SPS-1", accession="ACC-1", station="CT1", start=None,
        patient_id="P-1", name="DOE^JOHN", modality="CT", study_uid="", control_id=None, charset="",
        description="CT HEAD", birth_date="19700101", sex="M", order_status="SC"):
    """An ORM^O01 as IHE RAD-4 writes it (HL7 v2.3.1), with the defaults pacsweb reads."""
    start = start or today() + "093000"
    segments = [
        msh("ORM^O01^ORM_O01", control_id, charset),
        pid(patient_id, name, birth_date, sex),
        segment("PV1", {1: "1", 2: "O", 8: "D123^REFERRING^RITA"}),
        segment("ORC", {1: control, 2: placer, 3: f"F-{placer}", 5: order_status, 7: f"^^^{start}",
                        12: "D456^ORDERING^OSCAR", 18: station}),
        segment("OBR", {1: "1", 2: placer, 3: f"F-{placer}", 4: f"CT001^{description}^L", 18: accession,
                        19: f"RP-{accession}", 20: step, 24: modality}),
    ]
    if study_uid:
        segments.append(segment("ZDS", {1: f"{study_uid}^100^Application^DICOM"}))
    return "\r".join(segments) + "\r"


def adt(event, patient_id, name, birth_date="19700101", sex="M", control_id=None, charset=""):
    """An ADT^A08 / A31 (update patient information)."""
    return "\r".join([
        msh(f"ADT^{event}^ADT_A01", control_id, charset),
        segment("EVN", {1: event, 2: datetime.datetime.now().strftime("%Y%m%d%H%M%S")}),
        pid(patient_id, name, birth_date, sex),
        segment("PV1", {1: "1", 2: "O"}),
    ]) + "\r"


def acknowledged(ack):
    """(MSA-1, MSA-2) of an ACK."""
    msa = ack.segment("MSA")
    return str(msa[1]), str(msa[2])


# --- a node: web server, DICOM listener, HL7 listener ------------------------------

# The modality that queries the worklist in these tests (allowed to find).
MODALITY_AET = "CT1"


@dataclass
class WorkflowNode:
    server: servers.Server
    dicom: servers.Listener
    hl7: servers.Hl7Listener


@pytest.fixture(scope="module")
def workflow_node(tmp_path_factory):
    """A node shared by the tests of a module (a node takes seconds to start): each
    test uses its own patients, orders and station AE titles."""
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        pytest.fail("these tests need PostgreSQL: run them with `make test`, which starts one")
    root = tmp_path_factory.mktemp("workflow")
    started = []
    try:
        server = servers.Server(root / "node", workers=1)
        started.append(server)
        status, _ = servers.request_json(server.url + "/modalities/ct1", method="PUT", body=json.dumps(
            {"AET": MODALITY_AET, "Host": "127.0.0.1", "Port": 104, "AllowFind": True}).encode())
        assert status == 200
        dicom = servers.Listener(server)
        started.append(dicom)
        listener = servers.Hl7Listener(server)
        started.append(listener)
        yield WorkflowNode(server, dicom, listener)
    finally:
        for process in reversed(started):
            process.stop()


def messages(server, control_id):
    """(outcome, error) of each message kept with this control ID, in arrival order."""
    return server.sql("SELECT outcome, error FROM hl7_message WHERE control_id = %s ORDER BY id", [control_id])
