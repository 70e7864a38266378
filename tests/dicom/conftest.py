"""The DICOM listener driven from outside: DCMTK tools and pynetdicom as peers.

Tests talk to the listener only through DICOM and check the result through the
node's REST API and database. A module starts its node once (servers.Server and
servers.Listener, as the server_factory / listener_factory fixtures do, but at
module scope): a node takes several seconds to start, and most tests only read
what their module seeded.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from tests.storing import store_on as post_instance, store_zip_on as post_zip  # noqa: F401
from tests import servers

# Settings every listener of this suite starts with (the production defaults).
LISTENER_DEFAULTS = {}

TIMEOUT = 30  # bound of every DICOM exchange and tool run (seconds)

DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")


def dcmtk_executable(tool):
    """DCMTK's `tool`; the venv's pynetdicom ships scripts of the same names, skipped."""
    venv_bin = Path(sys.executable).parent.resolve()
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and Path(d).resolve() != venv_bin]
    executable = shutil.which(tool, path=os.pathsep.join(dirs + ["/usr/bin", "/usr/local/bin"]))
    assert executable, f"DCMTK's {tool} is not installed"
    return executable


def dcmtk(tool, *args, timeout=TIMEOUT):
    """Run a DCMTK tool (CompletedProcess, text output); never hangs past `timeout`."""
    return subprocess.run([dcmtk_executable(tool), *map(str, args)], env=DCMTK_ENV,
                          capture_output=True, text=True, timeout=timeout)


def postgres_or_fail():
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        pytest.fail("these tests need PostgreSQL: run them with `make test`, which starts one")


def write_modalities(path, entries):
    """A PACS_MODALITIES_FILE (Orthanc's DicomModalities format); returns its path as str."""
    path = Path(path)
    path.write_text(json.dumps(entries))
    return str(path)


def fast_stop(*listeners, grace=1):
    """SIGTERM the listeners, give them `grace` seconds, then SIGKILL.

    Listener.stop() waits up to 40 s, and a listener waits up to
    PACS_DICOM_TIMEOUT for associations still doing work; a suite cannot pay
    that for every listener. The shutdown itself is tested in test_robustness.py.
    """
    for listener in listeners:
        if listener.process.poll() is None:
            listener.process.terminate()
    deadline = time.monotonic() + grace
    for listener in listeners:
        try:
            listener.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            listener.process.kill()
            listener.process.wait(10)
        listener.stop()  # closes the log; the process has exited


class Node:
    """A server with its listeners, started for a module or a test; stop() ends them all."""

    def __init__(self, root):
        self.root = Path(root)
        self.servers = []
        self.listeners = []

    def server(self, name="node", **settings):
        postgres_or_fail()
        server = servers.Server(self.root / name, database="postgres", **{"workers": 1, **settings})
        self.servers.append(server)
        return server

    def listener(self, server, modalities=None, **settings):
        """A listener of `server`; `modalities` (a dict) becomes its PACS_MODALITIES_FILE."""
        env = dict(LISTENER_DEFAULTS)
        if modalities is not None:
            name = f"modalities-{len(self.listeners)}.json"
            env["PACS_MODALITIES_FILE"] = write_modalities(server.data_dir / name, modalities)
        env.update(settings)
        listener = servers.Listener(server, **env)
        self.listeners.append(listener)
        return listener

    def stop(self):
        try:
            fast_stop(*self.listeners)
        finally:
            for server in self.servers:
                server.stop()


@pytest.fixture(scope="module")
def module_node(tmp_path_factory):
    """Processes shared by the tests of one module."""
    node = Node(tmp_path_factory.mktemp("dimse"))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def server(module_node):
    """The module's server (a test module may define its own)."""
    return module_node.server()


@pytest.fixture(scope="module")
def listener(module_node, server):
    """A listener of the module's server with the default settings."""
    return module_node.listener(server)


# --- seeding and checking through REST -------------------------------------------


def statistics(server):
    status, answer = servers.request_json(server.url + "/statistics")
    assert status == 200
    return answer


def stored_dataset(server, public_id):
    status, _, body = servers.request(f"{server.url}/instances/{public_id}/file")
    assert status == 200, body[:300]
    return pydicom.dcmread(io.BytesIO(body))


def instance_ids(server):
    """SOP Instance UID → public id of every stored instance."""
    return dict(server.sql("SELECT sop_instance_uid, public_id FROM instance"))


# --- pynetdicom as a peer ---------------------------------------------------------


@contextmanager
def association(port, contexts, calling="PYNETDICOM", called="PACSWEB", ae=None):
    """An established association (asserted) with the listener; released or aborted at exit.

    `contexts`: abstract syntaxes, or (abstract syntax, [transfer syntaxes]) pairs.
    """
    if ae is None:
        ae = AE(ae_title=calling)
        for context in contexts:
            ae.add_requested_context(*context) if isinstance(context, tuple) else ae.add_requested_context(context)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    try:
        assert assoc.is_established, f"association {calling} → {called} not established"
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        elif not (assoc.is_aborted or assoc.is_rejected or assoc.is_released):
            assoc.abort()
