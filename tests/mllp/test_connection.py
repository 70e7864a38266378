"""What a RIS connection survives: a message cut short, a wrong MSH, a message in
ISO-8859-1 with escape sequences, an unsupported type. Each is answered and kept,
and the next message on the same connection is applied."""

import socket

from tests import servers
from tests.mllp.conftest import acknowledged, messages, msh, orm
from tests.waiting import wait_for

START, END = b"\x0b", b"\x1c\x0d"


def test_a_truncated_message_is_refused_kept_and_the_next_one_applied(workflow_node, hl7_client):
    client = hl7_client(workflow_node.hl7.port)
    whole = orm(placer="PO-400", accession="ACC-400", patient_id="P-400", control_id="CUT-400")
    cut = whole[:whole.index("PID|") + 12]  # in the middle of PID: no order follows
    ack = client.send(cut)
    assert acknowledged(ack) == ("AR", "CUT-400")
    assert str(ack.segment("ERR")[1]).startswith("^^^100")  # v2.3.1: the code in ERR-1
    [(outcome, error)] = messages(workflow_node.server, "CUT-400")
    assert outcome == "AR" and "ORC" in error
    assert workflow_node.server.sql("SELECT raw FROM hl7_message WHERE control_id = 'CUT-400'")[0][0] \
        .startswith(cut.rstrip("\r"))

    assert acknowledged(client.send(orm(placer="PO-401", accession="ACC-401", patient_id="P-401",
                                        control_id="AFTER-CUT")))[0] == "AA"
    assert messages(workflow_node.server, "AFTER-CUT") == [("AA", "")]


def test_messages_with_a_wrong_msh_are_refused_kept_and_the_next_one_applied(workflow_node, hl7_client):
    client = hl7_client(workflow_node.hl7.port)
    # No message type (MSH-9).
    no_type = msh("", control_id="NO-TYPE") + "\rPID|1||P-410\r"
    ack = client.send(no_type)
    assert acknowledged(ack) == ("AR", "NO-TYPE")
    assert "MSH-9" in str(ack.segment("MSA")[3])
    # Not an MSH at all.
    ack = client.send("PID|1||P-410^^^HOSPITAL||NO^HEADER\r")
    assert acknowledged(ack)[0] == "AR"
    assert "MSH" in str(ack.segment("MSA")[3])
    # Delimiters that are not delimiters.
    ack = client.send("MSHA^~\\&ARISAHOSPITAL\r")
    assert acknowledged(ack)[0] == "AR"
    # Garbled bytes, NUL included.
    ack = client.send(b"\x00\x01\xff GARBLED \x00")
    assert acknowledged(ack)[0] == "AR"
    kept = workflow_node.server.sql("SELECT outcome, raw FROM hl7_message WHERE raw LIKE %s OR raw LIKE %s "
                                    "OR control_id = %s", ["%NO^HEADER%", "%GARBLED%", "NO-TYPE"])
    assert sorted(outcome for outcome, _ in kept) == ["AR", "AR", "AR"]

    assert acknowledged(client.send(orm(placer="PO-411", accession="ACC-411", patient_id="P-411",
                                        control_id="AFTER-MSH")))[0] == "AA"


def test_an_unsupported_message_type_is_refused_with_its_error_code(workflow_node, hl7_client):
    client = hl7_client(workflow_node.hl7.port)
    ack = client.send(msh("ORU^R01", control_id="ORU-1", version="2.5") + "\rPID|1||P-420\r")
    assert acknowledged(ack) == ("AR", "ORU-1")
    err = ack.segment("ERR")
    assert str(err[3]).startswith("200^") and str(err[4]) == "E"  # v2.5: ERR-3, ERR-4


def test_an_iso_8859_1_message_with_escape_sequences_is_read_as_written(workflow_node, hl7_client):
    client = hl7_client(workflow_node.hl7.port)
    # Ü written as \XDC\ (the byte in the message's character set), É as the byte
    # itself, and the delimiters & and ^ escaped inside values.
    message = orm(placer="PO-430", accession="ACC-430", patient_id="P-430", name="M\\XDC\\LLER^J\\XDC\\RGEN",
                  description="ÉPAULE \\T\\ COUDE \\S\\ GAUCHE", charset="8859/1", control_id="LATIN-430")
    ack = client.send(message.encode("latin-1"), encoding="latin-1")
    assert acknowledged(ack) == ("AA", "LATIN-430")
    assert str(ack.segment("MSH")[18]) == "8859/1"  # answered in the sender's character set

    status, [item] = servers.request_json(workflow_node.server.url + "/worklists?AccessionNumber=ACC-430")
    dataset = item["Dataset"]
    assert dataset["00100010"]["Value"] == [{"Alphabetic": "MÜLLER^JÜRGEN"}]
    assert dataset["00321060"]["Value"] == ["ÉPAULE & COUDE ^ GAUCHE"]
    # Matched as the archive matches names: without regard to case or accents.
    status, found = servers.request_json(workflow_node.server.url + "/worklists?PatientName=muller*")
    assert [i["ID"] for i in found] == [item["ID"]]
    raw = workflow_node.server.sql("SELECT raw FROM hl7_message WHERE control_id = 'LATIN-430'")[0][0]
    assert "ÉPAULE" in raw  # kept as decoded text

    assert acknowledged(client.send(orm(placer="PO-431", accession="ACC-431", patient_id="P-431",
                                        control_id="AFTER-LATIN")))[0] == "AA"


def test_a_message_cut_short_by_the_next_block_is_kept_and_the_next_answered(workflow_node):
    whole = orm(placer="PO-440", accession="ACC-440", patient_id="P-440", control_id="WHOLE-440")
    partial = orm(placer="PO-441", accession="ACC-441", patient_id="P-441", control_id="PARTIAL-441")[:120]
    with socket.create_connection(("127.0.0.1", workflow_node.hl7.port), timeout=30) as sock:
        sock.sendall(START + partial.encode() + START + whole.encode() + END)
        answer = _read_block(sock)
    assert b"MSA|AA|WHOLE-440" in answer  # the one answer: to the whole message
    assert messages(workflow_node.server, "WHOLE-440") == [("AA", "")]
    [(outcome, error)] = messages(workflow_node.server, "PARTIAL-441")
    assert outcome == "AR" and "cut short" in error


def test_a_connection_closed_in_the_middle_of_a_message_leaves_it_kept(workflow_node):
    partial = orm(placer="PO-450", patient_id="P-450", control_id="CLOSED-450")[:150]
    with socket.create_connection(("127.0.0.1", workflow_node.hl7.port), timeout=30) as sock:
        sock.sendall(START + partial.encode())
    wait_for(lambda: messages(workflow_node.server, "CLOSED-450"), what="the partial message kept")
    [(outcome, error)] = messages(workflow_node.server, "CLOSED-450")
    assert outcome == "AR" and "closed" in error


def _read_block(sock):
    data = b""
    while not data.endswith(END):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    assert data.startswith(START)
    return data[1:-2]


def test_the_listener_joins_the_registry_and_stops_on_sigterm_closing_idle_connections(workflow_node,
                                                                                    hl7_listener_factory):
    server = workflow_node.server
    listener = hl7_listener_factory(server)

    def registered():
        nodes = servers.request_json(server.url + "/cluster/nodes")[1]
        return [p for n in nodes for p in n["Processes"] if p["Kind"] == "hl7" and p["Pid"] == listener.process.pid]

    wait_for(registered, what="the HL7 listener in the registry")
    with socket.create_connection(("127.0.0.1", listener.port), timeout=30) as sock:
        sock.sendall(START + orm(placer="PO-460", patient_id="P-460", control_id="BEFORE-STOP").encode() + END)
        assert b"MSA|AA|BEFORE-STOP" in _read_block(sock)
        listener.process.terminate()
        assert listener.process.wait(20) == 0
        assert sock.recv(1024) == b""  # the idle connection was closed, not left hanging
