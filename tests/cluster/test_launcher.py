"""`make run`'s launcher on the embedded defaults: SQLite, local storage, embedded Redis."""

import atexit
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from cluster.management.commands import run

from tests import memory, servers
from tests.dicomgen import make_instance
from tests.mllp.conftest import Hl7Client, acknowledged, orm
from tests.waiting import wait_for


def test_single_node_starts_everything_serves_and_stops_on_ctrl_c(tmp_path):
    """Ctrl-C in a terminal signals the launcher's whole process group, as here."""
    port, dicom_port, hl7_port = servers.free_port(), servers.free_port(), servers.free_port()
    env = servers.base_env(tmp_path / "data", PACS_HTTP_PORT=port, PACS_DICOM_PORT=dicom_port, PACS_HL7_PORT=hl7_port,
                           PACS_AE_TITLE="LAPTOP")
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.pop("PACS_ADMIN_PASSWORD")  # a fresh install prints a generated password
    log = open(tmp_path / "run.log", "w+")
    killed_at = None
    launcher = subprocess.Popen([sys.executable, "manage.py", "run", "--bind", "127.0.0.1"],
                                cwd=servers.REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        def banner():
            assert launcher.poll() is None, (tmp_path / "run.log").read_text()
            return "Stop with Ctrl-C" in (tmp_path / "run.log").read_text()

        wait_for(banner, timeout=90, what="the banner")
        output = (tmp_path / "run.log").read_text()
        assert f"http://localhost:{port}/" in output
        password = output.split("password: ")[1].split()[0]
        auth = servers.auth_header("admin", password)
        url = f"http://127.0.0.1:{port}"

        children = psutil.Process(launcher.pid).children(recursive=True)
        commands = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in commands
        # The roles are forked from the launcher, each named after its role in ps.
        names = {c.name() for c in children}
        assert {"pacs-web", "pacs-worker-1", "pacs-housekeepe", "pacs-dicom-1", "pacs-hl7"} <= names, names
        # Idle, the whole node (11 processes on 2 cores) holds at most 350 MB of
        # proportional memory: the roles share what the launcher imported (issue 16).
        processes = memory.node_processes(launcher.pid)
        assert sum(size for _, _, size in processes) <= 350 * memory.MB, memory.describe(processes)
        assert "AE title LAPTOP" in output and f"port {dicom_port}" in output
        assert re.search(rf"RIS \(HL7 v2 / MLLP\): +\S+:{hl7_port}\n", output), output
        echo = subprocess.run(["echoscu", "-aec", "LAPTOP", "127.0.0.1", str(dicom_port)], capture_output=True)
        assert echo.returncode == 0, echo.stderr

        # The RIS's orders reach the worklist on SQLite too.
        client = Hl7Client(hl7_port)
        try:
            assert acknowledged(client.send(orm(control_id="LAPTOP-1"))) == ("AA", "LAPTOP-1")
        finally:
            client.close()
        status, items = servers.request_json(url + "/worklists", auth=auth)
        assert [item["Status"] for item in items] == ["SCHEDULED"]

        status, body = servers.request_json(url + "/readyz", auth=False)
        assert (status, body["status"]) == (200, "ready")
        data = make_instance()
        status, body = servers.request_json(url + "/instances", method="POST", body=data, auth=auth)
        assert (status, body["Status"]) == (200, "Success")
        status, _, stored = servers.request(url + f"/instances/{body['ID']}/file", auth=auth)
        assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
        assert (tmp_path / "data" / "pacsweb.sqlite3").exists()

        # The worker runs jobs on the embedded Redis and SQLite.
        status, job = servers.request_json(url + f"/instances/{body['ID']}/study", auth=auth)
        status, job = servers.request_json(url + f"/studies/{job['ID']}/archive", method="POST",
                                           body=b'{"Asynchronous": true}', auth=auth)
        assert status == 200, job

        def archived():
            state = servers.request_json(url + f"/jobs/{job['ID']}", auth=auth)[1]["State"]
            assert state in ("Pending", "Running", "Success"), state
            return state == "Success"

        wait_for(archived, what="the archive job done")
        status, _, archive = servers.request(url + f"/jobs/{job['ID']}/archive", auth=auth)
        assert status == 200 and archive.startswith(b"PK")

        # A crash of the embedded Redis (it only carries queues) does not stop the node:
        # it is started again and jobs go on.
        [redis] = [c for c in children if "redis-server" in " ".join(c.cmdline())]
        killed_at = len((tmp_path / "run.log").read_text())
        redis.kill()
        wait_for(lambda: "redis process exited" in (tmp_path / "run.log").read_text(), what="Redis restarted")
        assert launcher.poll() is None
        wait_for(lambda: servers.request(url + "/readyz", auth=False)[0] == 200, what="/readyz with Redis back")
        study = servers.request_json(url + f"/instances/{body['ID']}/study", auth=auth)[1]["ID"]
        status, job = servers.request_json(url + f"/studies/{study}/archive", method="POST",
                                           body=b'{"Asynchronous": true}', auth=auth)
        assert status == 200, job
        wait_for(archived, what="the archive job run after the restart")
    finally:
        os.killpg(launcher.pid, signal.SIGINT)
        launcher.wait(120)  # the launcher gives its children 30 s; a loaded machine starts and stops slowly
        log.close()
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child
    output = (tmp_path / "run.log").read_text()
    assert launcher.returncode == 0, output
    # After the deliberate Redis kill, the workers say they wait for it, and nothing else goes wrong.
    assert output.rstrip().splitlines()[-1] == "pacsweb stopped."
    # Before the deliberate Redis kill, nothing went wrong; after it, RQ's workers log
    # their lost connection (and its bookkeeping of the job they were running) while
    # the job's row, the truth, says Success (checked above).
    output, after_kill = output[:killed_at], output[killed_at:]
    assert "starting it again" in after_kill
    assert "Traceback" not in output and "Error" not in output, output
    # The terminal shows the banner, not one line per request: those go to the file the banner names.
    access_log = tmp_path / "data" / "access.log"
    assert f"Access log:               {access_log}" in output
    assert "/readyz" in access_log.read_text() and "/readyz" not in output


def test_second_start_keeps_the_admin_password_and_data(tmp_path):
    env = servers.base_env(tmp_path, PACS_ADMIN_PASSWORD="first-password")
    env.pop("DATABASE_URL", None)
    servers.manage("migrate", "--noinput", env=env)
    first = servers.manage("ensure_admin", env=env)
    assert "PACS_ADMIN_PASSWORD" in first.stdout
    env["PACS_ADMIN_PASSWORD"] = "other"
    second = servers.manage("ensure_admin", env=env)
    assert second.stdout == ""
    secret = (tmp_path / "secret_key").read_text()
    servers.manage("check", env=env)
    assert (tmp_path / "secret_key").read_text() == secret


def _fail():
    raise RuntimeError("a role that breaks")


def _wait_forever():
    threading.Event().wait(120)


def test_a_forked_role_exits_with_its_own_status():
    assert run.fork("ok", lambda: None).wait(30) == 0
    assert run.fork("exits", lambda: sys.exit(3)).wait(30) == 3
    assert run.fork("breaks", _fail).wait(30) == 1


def test_a_forked_role_runs_its_exit_handlers_not_the_launchers(tmp_path):
    """A role's exit handlers run as a new interpreter's would (the metrics send their
    last counts from one); the launcher's stay the launcher's."""
    launchers = tmp_path / "launcher's"

    def launcher_handler():
        launchers.write_text("ran")

    atexit.register(launcher_handler)
    try:
        def role():
            atexit.register(lambda: (tmp_path / "role's").write_text("ran"))
            sys.exit(0)

        assert run.fork("exits", role).wait(30) == 0
        assert (tmp_path / "role's").read_text() == "ran"
        assert not launchers.exists()
    finally:
        atexit.unregister(launcher_handler)


def test_a_forked_role_has_its_own_process_group_and_name(tmp_path):
    seen = tmp_path / "seen"

    def role():
        seen.write_text(f"{os.getpgid(0)} {os.getpid()} {Path('/proc/self/comm').read_text().strip()}")

    child = run.fork("probe", role)
    assert child.wait(30) == 0
    group, pid, name = seen.read_text().split()
    # Its own group: Ctrl-C in the terminal reaches the launcher only.
    assert (int(group), int(pid), name) == (child.pid, child.pid, "pacs-probe")


def test_a_forked_role_that_does_not_stop_in_time_is_killed():
    child = run.fork("slow", _wait_forever)
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=0.2)
    assert child.poll() is None
    child.kill()
    assert child.wait(30) == -signal.SIGKILL
