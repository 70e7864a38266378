"""A cluster under failure: a node killed under load, a rolling restart behind
HAProxy, a large upload through one node."""

import csv
import hashlib
import io
import json
import threading
import time
import urllib.request
import zipfile

import psutil
import pydicom

from cluster import balancer
from tests import servers
from tests.cluster.conftest import Load, c_store
from tests.peers import RemotePacs
from tests.dicomgen import make_instance, uid
from tests.cluster.jobs.conftest import md5, study_files, upload, wait_job
from tests.waiting import wait_for, wait_seconds_passed

HEARTBEAT = 2  # PACS_JOB_HEARTBEAT_TIMEOUT of the nodes killed under load (seconds)


def kill_tree(process):
    """SIGKILL a process and every process below it: a node's machine lost power."""
    root = psutil.Process(process.pid)
    for proc in root.children(recursive=True) + [root]:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait(10)


# Appended to the cluster's HAProxy configuration: its view of the nodes, for the test.
STATISTICS = """
listen statistics
    mode http
    bind 127.0.0.1:{port}
    stats enable
    stats uri /
"""


def haproxy_view(statistics_url, backend="nodes_http"):
    """{node name: (status, last check's status)} in HAProxy's statistics (CSV)."""
    with urllib.request.urlopen(statistics_url + "/;csv", timeout=5) as response:
        rows = csv.DictReader(io.StringIO(response.read().decode().removeprefix("# ")))
        return {row["svname"]: (row["status"], row["check_status"]) for row in rows
                if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")}


def progressed(load, since, names, count):
    """Whether each of the load's `names` has sent `count` more requests than in `since`."""
    with load.lock:
        return all(load.counts.get(name, 0) >= since.get(name, 0) + count for name in names)


def test_a_node_killed_under_load_loses_nothing_acknowledged(node_factory, listener_factory, worker_factory,
                                                             tmp_path):
    nodes = node_factory(3, PACS_JOB_HEARTBEAT_TIMEOUT=HEARTBEAT)
    victim = nodes[2]
    victim_listener = listener_factory(victim)
    remote = RemotePacs(servers.free_port(), delay=0.05)
    try:
        # A send running on the victim's worker when it dies: its run is held after
        # the 10th of 120 instances (the hold file stays), so it is killed mid-run.
        (study,) = upload(nodes[0], study_files("kill-send", 120))
        servers.request_json(nodes[0].url + "/modalities/remote", method="PUT",
                             body=json.dumps({"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port}).encode())
        hold = tmp_path / "hold"
        hold.write_text("10")
        victim_worker = worker_factory(victim, PACS_TEST_JOB_HOLD_FILE=hold)
        status, job = servers.request_json(nodes[1].url + "/modalities/remote/store", method="POST",
                                           body=json.dumps({"Resources": [study], "Asynchronous": True}).encode())

        def held():
            described = servers.request_json(nodes[0].url + f"/jobs/{job['ID']}")[1]
            return described["State"] == "Running" and described["Progress"] >= 10 * 100 // 120

        wait_for(held, what="the send held after its 10th instance")

        acknowledged = {}
        lock = threading.Lock()

        def rest_upload(node, tag):
            def action(n):
                data = make_instance(patient_id=f"LOAD-{tag}", study_uid=uid("load", tag),
                                     sop_uid=uid("load", tag, n), instance_number=n + 1)
                status, _ = servers.request_json(node.url + "/instances", method="POST", body=data, timeout=10)
                if status == 200:
                    with lock:
                        acknowledged[str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID)] = md5(data)
                return True, None  # failures against the dying node are expected
            return action

        def dicom_upload(n):
            data = make_instance(patient_id="LOAD-DICOM", study_uid=uid("load", "dicom"),
                                 sop_uid=uid("load", "dicom", n), instance_number=n + 1)
            ds = pydicom.dcmread(io.BytesIO(data))
            if c_store(victim_listener.port, [ds]):
                with lock:
                    acknowledged[str(ds.SOPInstanceUID)] = None
            return True, None

        def query(n):
            node = nodes[n % 2]
            status, _ = servers.request_json(node.url + "/tools/find", method="POST",
                                             body=b'{"Level": "Study", "Query": {"PatientID": "LOAD*"}}')
            return status == 200, status

        load = Load()
        streams = ("rest-victim", "rest-survivor", "dicom-victim", "query-survivors")
        load.run("rest-victim", rest_upload(victim, "victim"))
        load.run("rest-survivor", rest_upload(nodes[0], "survivor"))
        load.run("dicom-victim", dicom_upload)
        load.run("query-survivors", query)
        wait_for(lambda: progressed(load, {}, streams, 10), what="10 requests of each kind under way")
        kill_tree(victim.process)
        kill_tree(victim_listener.process)
        kill_tree(victim_worker.process)
        killed = time.monotonic()
        with load.lock:
            at_kill = dict(load.counts)
        # The load goes on against the survivors for a while after the kill.
        wait_for(lambda: progressed(load, at_kill, ("rest-survivor", "query-survivors"), 10),
                 what="10 more requests to the survivors")
        load.stop()
        # Requests to the dying node may fail; the survivors answered every one.
        assert [f for f in load.failures if not f[0].endswith("victim")] == []

        assert len(acknowledged) > 20
        for sop_uid, checksum in acknowledged.items():
            status, found = servers.request_json(nodes[1].url + "/tools/find", method="POST", body=json.dumps(
                {"Level": "Instance", "Query": {"SOPInstanceUID": sop_uid}}).encode())
            assert status == 200 and len(found) == 1, (sop_uid, found)
            status, _, data = servers.request(nodes[1].url + f"/instances/{found[0]}/file")
            assert status == 200
            assert checksum is None or md5(data) == checksum
        # No index row without its file, and no attachment row without its instance.
        rows = nodes[0].sql("SELECT i.public_id, a.storage_key FROM instance i "
                            "LEFT JOIN attachment a ON a.resource_id = i.public_id AND a.name = 'dicom'")
        assert all(key for _, key in rows)
        stored = {p.name for p in nodes[0].storage_files()}
        assert all(key in stored for _, key in rows)

        # The dead node's job: the survivors' housekeeper re-queues it (once its
        # heartbeat is older than the timeout, an age the housekeeper counts), their
        # worker completes it.
        wait_seconds_passed(killed, HEARTBEAT + 0.5)
        servers.housekeeper_pass(nodes[0])
        worker_factory(nodes[0])
        job = wait_job(nodes[1], job["ID"], timeout=90)
        assert job["State"] == "Success", job
        assert job["Node"] == "node1"
        assert {ds.SOPInstanceUID for ds in remote.received} >= {
            pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID for f in study_files("kill-send", 120)}
    finally:
        remote.stop()


def test_a_rolling_restart_behind_haproxy_fails_no_request(node_factory, tmp_path):
    nodes = node_factory(3)
    port = servers.free_port()
    backends = [balancer.Backend(f"node{i}", "127.0.0.1", node.port, servers.free_port())
                for i, node in enumerate(nodes, 1)]
    config = tmp_path / "haproxy.cfg"
    statistics_port = servers.free_port()
    config.write_text(balancer.config(backends, port, servers.free_port()) + STATISTICS.format(port=statistics_port))
    haproxy = balancer.start(config, open(tmp_path / "haproxy.log", "w"))
    front = f"http://127.0.0.1:{port}"
    statistics = f"http://127.0.0.1:{statistics_port}"
    try:
        wait_for(lambda: servers.request(front + "/readyz", auth=False)[0] == 200, what="HAProxy up")
        wait_for(lambda: list(haproxy_view(statistics).values()) == [("UP", "L7OK")] * 3,
                 what="every node past its first checks")
        stored = []

        def uploader(tag):
            def action(n):
                data = make_instance(patient_id=f"ROLL-{tag}", study_uid=uid("roll", tag),
                                     sop_uid=uid("roll", tag, n), instance_number=n + 1)
                status, answer = servers.request_json(front + "/instances", method="POST", body=data, timeout=30)
                if status == 200:
                    stored.append(answer["ID"])
                return status == 200, (status, answer)
            return action

        def querier(n):
            path = "/studies" if n % 2 else "/tools/find"
            if n % 2:
                status, _ = servers.request_json(front + path, timeout=30)
            else:
                status, _ = servers.request_json(front + path, method="POST", timeout=30,
                                                 body=b'{"Level": "Series", "Query": {"PatientID": "ROLL*"}}')
            return status == 200, status

        load = Load()
        streams = ("upload-a", "upload-b", "query")
        for tag in ("a", "b"):
            load.run(f"upload-{tag}", uploader(tag))
        load.run("query", querier)
        for i, node in enumerate(nodes, 1):
            status, _ = servers.request_json(front + f"/cluster/nodes/node{i}/drain", method="POST")
            assert status == 200
            wait_for(lambda: servers.request(node.url + "/readyz", auth=False)[0] == 503, what="draining")
            # HAProxy saw it and sends it nothing new.
            wait_for(lambda: haproxy_view(statistics)[f"node{i}"][0] == "DOWN", what=f"node{i} out of HAProxy")
            node.stop()
            node.start()
            status, _ = servers.request_json(front + f"/cluster/nodes/node{i}/undrain", method="POST")
            assert status == 200
            wait_for(lambda: servers.request(node.url + "/readyz", auth=False)[0] == 200, what="ready")
            wait_for(lambda: haproxy_view(statistics)[f"node{i}"][0] == "UP", what=f"node{i} back in HAProxy")
        with load.lock:
            restored = dict(load.counts)
        wait_for(lambda: progressed(load, restored, streams, 5), what="5 more requests of each kind")
        load.stop()
        assert load.failures == []
        assert load.counts["query"] > 20 and load.counts["upload-a"] > 20, load.counts
        status, statistics = servers.request_json(front + "/statistics")
        assert statistics["CountInstances"] == len(stored) == len(set(stored))
        status, listed = servers.request_json(front + "/cluster/nodes")
        assert sorted(n["Name"] for n in listed) == ["node1", "node2", "node3"]
        assert all(n["Status"] == "up" and not n["Draining"] for n in listed), listed
        for entry, backend in zip(sorted(listed, key=lambda n: n["Name"]), backends):
            assert entry["Url"] == f"http://127.0.0.1:{backend.http_port}"
    finally:
        haproxy.terminate()
        haproxy.wait(10)


def test_a_one_gigabyte_upload_keeps_the_process_small(server_factory, tmp_path):
    server = server_factory(workers=1, threads=2)
    body = tmp_path / "big.zip"
    files = []
    with zipfile.ZipFile(body, "w", zipfile.ZIP_STORED) as archive:
        template = make_instance(patient_id="BIG", rows=2048, columns=2048, study_uid=uid("big", "study"),
                                 sop_uid=uid("big", 0))
        ds = pydicom.dcmread(io.BytesIO(template))
        for n in range(128):  # 128 x 8.4 MB
            ds.SOPInstanceUID = uid("big", n)
            ds.InstanceNumber = n + 1
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            archive.writestr(f"{n:04d}.dcm", out.getvalue())
            files.append(hashlib.md5(out.getvalue()).hexdigest())
    size = body.stat().st_size
    assert size > 1_000_000_000

    workers = psutil.Process(server.process.pid).children()
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(p.memory_info().rss for p in workers))
            done.wait(0.05)  # a sample every 50 ms until the upload has ended

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with open(body, "rb") as stream:
            request = urllib.request.Request(server.url + "/instances", data=stream, method="POST", headers={
                "Authorization": servers.auth_header(), "Content-Type": "application/zip",
                "Content-Length": str(size)})
            with urllib.request.urlopen(request, timeout=600) as response:
                answers = json.loads(response.read())
    finally:
        done.set()
        sampler.join()
    assert len(answers) == 128 and all(a["Status"] == "Success" for a in answers)
    print(f"1 GB upload: peak RSS of the web process {peak / 1e6:.0f} MB")
    assert peak < 200 * 1024 * 1024, f"peak RSS {peak / 1e6:.0f} MB"
    stored = sorted(hashlib.md5(p.read_bytes()).hexdigest() for p in server.storage_files())
    assert stored == sorted(files)
    assert server.temporary_files() == []

