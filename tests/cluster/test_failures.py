"""A cluster under failure: a node killed under load, a rolling restart behind
HAProxy, a large upload through one node."""

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
from tests.cluster.conftest import Load, c_store, wait_for
from tests.cluster.test_modalities_rest import RemotePacs
from tests.dicomgen import make_instance, uid
from tests.jobs.conftest import md5, study_files, upload, wait_job


def kill_tree(process):
    """SIGKILL a process and every process below it: a node's machine lost power."""
    root = psutil.Process(process.pid)
    for proc in root.children(recursive=True) + [root]:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait(10)


def test_a_node_killed_under_load_loses_nothing_acknowledged(node_factory, listener_factory, worker_factory):
    nodes = node_factory(3, PACS_JOB_HEARTBEAT_TIMEOUT=2)
    victim = nodes[2]
    victim_listener = listener_factory(victim)
    remote = RemotePacs(servers.free_port(), delay=0.05)
    try:
        # A send running on the victim's worker when it dies.
        (study,) = upload(nodes[0], study_files("kill-send", 120))
        servers.request_json(nodes[0].url + "/modalities/remote", method="PUT",
                             body=json.dumps({"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port}).encode())
        victim_worker = worker_factory(victim)
        status, job = servers.request_json(nodes[1].url + "/modalities/remote/store", method="POST",
                                           body=json.dumps({"Resources": [study], "Asynchronous": True}).encode())
        wait_for(lambda: servers.request_json(nodes[0].url + f"/jobs/{job['ID']}")[1]["State"] == "Running",
                 what="the send running")

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
        load.run("rest-victim", rest_upload(victim, "victim"))
        load.run("rest-survivor", rest_upload(nodes[0], "survivor"))
        load.run("dicom-victim", dicom_upload)
        load.run("query-survivors", query)
        time.sleep(3)
        kill_tree(victim.process)
        kill_tree(victim_listener.process)
        kill_tree(victim_worker.process)
        time.sleep(2)
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

        # The dead node's job: the survivors' housekeeper re-queues it, their worker completes it.
        time.sleep(2.5)
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
    config.write_text(balancer.config(backends, port, servers.free_port()))
    haproxy = balancer.start(config, open(tmp_path / "haproxy.log", "w"))
    front = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: servers.request(front + "/readyz", auth=False)[0] == 200, what="HAProxy up")
        time.sleep(1.5)  # every node has passed its first checks
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
        for tag in ("a", "b"):
            load.run(f"upload-{tag}", uploader(tag))
        load.run("query", querier)
        for i, node in enumerate(nodes, 1):
            status, _ = servers.request_json(front + f"/cluster/nodes/node{i}/drain", method="POST")
            assert status == 200
            wait_for(lambda: servers.request(node.url + "/readyz", auth=False)[0] == 503, what="draining")
            time.sleep(1.5)  # HAProxy saw it (checks every 0.5 s) and sends it nothing new
            node.stop()
            node.start()
            status, _ = servers.request_json(front + f"/cluster/nodes/node{i}/undrain", method="POST")
            assert status == 200
            wait_for(lambda: servers.request(node.url + "/readyz", auth=False)[0] == 200, what="ready")
            time.sleep(1.5)  # back in HAProxy's rotation
        time.sleep(1)
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
            time.sleep(0.05)

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

