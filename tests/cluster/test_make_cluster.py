"""`make cluster`: N nodes and HAProxy on one machine, one command, Ctrl-C stops all."""

import random
import signal
import subprocess
import sys

import psutil
import psycopg

from tests import servers
from tests.dicomgen import make_instance
from tests.mllp.conftest import Hl7Client, acknowledged, orm
from tests.waiting import wait_for


def test_make_cluster_starts_nodes_behind_haproxy_and_stops_them(tmp_path):
    # Node i listens on http+i and dicom+i: bases whose next ports are free too, below
    # the kernel's ephemeral range, where the local end of any outgoing connection
    # could take one of them between this check and the nodes' start.
    chooser = random.Random()
    while True:
        http, dicom, hl7 = (chooser.randrange(20000, 32000, 3) for _ in range(3))
        bases = sorted((http, dicom, hl7))
        if bases[1] - bases[0] > 3 and bases[2] - bases[1] > 3 and all(
                _free(base + i) for base in bases for i in range(3)):
            break
    env = servers.base_env(tmp_path / "data", PACS_HTTP_PORT=http, PACS_DICOM_PORT=dicom, PACS_HL7_PORT=hl7,
                           PACS_CLUSTER_NODES=2,
                           DATABASE_URL=servers.create_database(), PACS_QUEUE_PREFIX="make-cluster")
    log = open(tmp_path / "cluster.log", "w+")
    launcher = subprocess.Popen([sys.executable, "manage.py", "cluster"], cwd=servers.REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    children = []
    try:
        wait_for(lambda: "Stop with Ctrl-C" in (tmp_path / "cluster.log").read_text() or launcher.poll() is not None,
                 timeout=120, what="the banner")
        output = (tmp_path / "cluster.log").read_text()
        assert launcher.poll() is None, output
        assert f"http://127.0.0.1:{http}/" in output and f"127.0.0.1:{dicom}" in output
        assert f"http://127.0.0.1:{http + 2}/" in output and f"127.0.0.1:{dicom + 2}" in output
        assert f"RIS (HL7 v2 / MLLP): 127.0.0.1:{hl7}" in output and f"HL7 127.0.0.1:{hl7 + 2}" in output
        children = psutil.Process(launcher.pid).children(recursive=True)
        assert any("haproxy" in " ".join(c.cmdline()) for c in children)

        front = f"http://127.0.0.1:{http}"
        # Each process of a node registers itself once it has started: the web server
        # first, the housekeeper maybe last, whenever a loaded machine lets it.
        every_kind = {"web", "dicom", "hl7", "worker", "housekeeper"}

        def registered():
            nodes = servers.request_json(front + "/cluster/nodes")[1]
            up = [n for n in nodes if n["Status"] == "up"]
            return len(up) == 2 and all({p["Kind"] for p in n["Processes"]} == every_kind for n in up) and nodes

        nodes = wait_for(registered, what="two nodes up, each with every kind of process")
        assert sorted((n["Name"], n["Url"], n["DicomPort"]) for n in nodes) == [
            ("node1", f"http://127.0.0.1:{http + 1}", dicom + 1), ("node2", f"http://127.0.0.1:{http + 2}", dicom + 2)]

        status, stored = servers.request_json(front + "/instances", method="POST", body=make_instance())
        assert status == 200
        for port in (http + 1, http + 2):  # one archive, whichever node answers
            assert servers.request_json(f"http://127.0.0.1:{port}/instances")[1] == [stored["ID"]]
        echo = subprocess.run(["echoscu", "-aec", "PACSWEB", "127.0.0.1", str(dicom)], capture_output=True)
        assert echo.returncode == 0, echo.stderr
        # Orders through the balancer, a connection each: every one applied once,
        # whichever node took it.
        for n in range(4):
            client = Hl7Client(hl7)
            try:
                assert acknowledged(client.send(orm(placer=f"PO-{n}", control_id=f"LB-{n}"))) == ("AA", f"LB-{n}")
            finally:
                client.close()
        items = servers.request_json(front + "/worklists")[1]
        assert sorted(item["Dataset"]["00402016"]["Value"][0] for item in items) == ["PO-0", "PO-1", "PO-2", "PO-3"]
        # The balancer spread the connections over the nodes: each node's listener took some.
        with psycopg.connect(env["DATABASE_URL"]) as database:
            takers = database.execute("SELECT node, count(*) FROM hl7_message WHERE control_id LIKE 'LB-%%' "
                                      "GROUP BY node").fetchall()
        assert sorted(node for node, _ in takers) == ["node1", "node2"] and sum(n for _, n in takers) == 4

        # Losing a node (all its processes killed) leaves the other one serving, through
        # the balancer too; the launcher keeps running and says what happened.
        node2 = [c for c in psutil.Process(launcher.pid).children()
                 if c.environ().get("PACS_NODE_NAME") == "node2"]
        assert len(node2) == 1
        for process in node2[0].children(recursive=True) + node2:
            process.kill()
        wait_for(lambda: "node2 exited" in (tmp_path / "cluster.log").read_text(), what="node2 reported gone")
        assert launcher.poll() is None
        assert servers.request_json(f"http://127.0.0.1:{http + 1}/instances")[1] == [stored["ID"]]
        wait_for(lambda: all(servers.request(front + "/statistics", timeout=10)[0] == 200 for _ in range(4)),
                 timeout=30, what="the balancer serving from the remaining node")
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.wait(180)  # every node gives its children 30 s; a loaded machine starts and stops slowly
        log.close()
    wait_for(lambda: not any(_alive(child) for child in children), what="every process of the cluster ended")
    for child in children:
        assert not _alive(child), child
    # Stopping is not deleting: the storage (and the database) stay for the next start.
    stored_files = [p for p in (tmp_path / "data" / "cluster" / "storage").rglob("*")
                    if p.is_file() and p.parent.name not in ("tmp", "archives")]
    assert len(stored_files) == 1
    with psycopg.connect(env["DATABASE_URL"]) as database:
        assert database.execute("SELECT count(*) FROM instance").fetchone()[0] == 1


def _alive(process):
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _free(port):
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
