"""Real pacsweb server processes for tests that cross process boundaries.

Each server gets its own database (a fresh PostgreSQL database copied from a
migrated template, or a SQLite file) and its own data directory, and runs
gunicorn exactly as a node does.
"""

import base64
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg

from tests.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "test-admin-password"
TEMPLATE_DB = "pacs_template"
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"  # what nodes run with


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts_connections(port):
    """Whether a TCP connection to the port of 127.0.0.1 is accepted now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def with_database(url, name):
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path="/" + name))


def admin_connection():
    return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)


def manage(*args, env, check=True, timeout=300):
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        env=env, cwd=REPO, check=check, timeout=timeout, capture_output=True, text=True,
    )


def base_env(data_dir, **overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    # The OHIF viewer is installed once for every server of every run (console/ohif.py).
    env.update(PACS_DATA_DIR=str(data_dir), PACS_ADMIN_PASSWORD=ADMIN_PASSWORD, MALLOC_ARENA_MAX="5",
               PACS_OHIF_DIR=str(REPO / "var" / "ohif"))
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def ensure_template():
    """Migrate the template database once per PostgreSQL server."""
    with admin_connection() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [TEMPLATE_DB]).fetchone()
        if exists:
            return
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    env = base_env(REPO / "var" / "template", DATABASE_URL=with_database(os.environ["DATABASE_URL"], TEMPLATE_DB),
                   PACS_DB_POOL_SIZE=0)
    manage("migrate", "--noinput", env=env)
    # Every server's database is a copy: its admin account too (what `make run`
    # creates on first start), which saves each server a Django start and a hash.
    manage("ensure_admin", env=env)


def create_database():
    ensure_template()
    name = "pacs_" + uuid.uuid4().hex[:12]
    with admin_connection() as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return with_database(os.environ["DATABASE_URL"], name)


class Server:
    """A running node: `url` is its REST base URL, `env` the environment it runs with."""

    def __init__(self, data_dir, database="postgres", workers=1, threads=4, join=None, **settings):
        """`join`: another Server whose cluster this one joins (same database,
        storage and queues), as a second node behind a load balancer."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # Every test's servers share the run's Redis: their own queues keep one
        # test's jobs from reaching another test's workers.
        overrides = dict(PACS_HTTP_PORT=self.port, PACS_QUEUE_PREFIX=f"test-{uuid.uuid4().hex[:12]}",
                         PACS_NODE_URL=f"http://127.0.0.1:{self.port}")
        if join is not None:
            overrides.update(PACS_QUEUE_PREFIX=join.env["PACS_QUEUE_PREFIX"],
                             PACS_STORAGE_DIR=join.env.get("PACS_STORAGE_DIR", str(join.data_dir / "storage")))
        overrides.update(settings)
        if join is not None:
            overrides["DATABASE_URL"] = join.database_url
        elif database == "postgres":
            overrides["DATABASE_URL"] = create_database()
        else:
            overrides["DATABASE_URL"] = ""
        self.database_url = overrides["DATABASE_URL"]
        self.env = base_env(self.data_dir, **overrides)
        if database != "postgres":
            self.env.pop("DATABASE_URL")
            manage("migrate", "--noinput", env=self.env)
            manage("ensure_admin", env=self.env)
        self.log = open(self.data_dir / "server.log", "a")
        self.command = [sys.executable, "-m", "gunicorn", "pacsweb.wsgi", "--config", str(GUNICORN_CONF),
                        "--bind", f"127.0.0.1:{self.port}",
                        "--worker-class", "pacsweb.webworker.HeadFirstWorker", "--workers", str(workers), "--threads", str(threads),
                        "--graceful-timeout", "5", "--no-control-socket"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.start()

    def start(self):
        """Start the web server (again, after stop(): same port, same data)."""
        if self.log.closed:
            self.log = open(self.data_dir / "server.log", "a")
        self.process = subprocess.Popen(self.command, env=self.env, cwd=REPO, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        wait_until_up(self.url, self.process)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()

    def output(self):
        return (self.data_dir / "server.log").read_text()

    def sql(self, query, params=()):
        """Rows of a query on this server's database."""
        if self.database_url:
            with psycopg.connect(self.database_url) as conn:
                return conn.execute(query, params).fetchall()
        import sqlite3

        with sqlite3.connect(self.data_dir / "pacsweb.sqlite3") as conn:
            return conn.execute(query.replace("%s", "?"), params).fetchall()

    def sql_execute(self, statement, params=()):
        """Run a statement on this server's PostgreSQL database and commit it."""
        with psycopg.connect(self.database_url) as conn:
            conn.execute(statement, params)

    def storage_files(self):
        root = self.data_dir / "storage"
        return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name not in ("tmp", "archives"))

    def archive_files(self):
        """Files in the archive area (asynchronous archives and their partial files)."""
        return sorted((self.data_dir / "storage" / "archives").glob("*"))

    def temporary_files(self):
        return [p for p in (self.data_dir / "storage" / "tmp").glob("*")] + [
            p for p in (self.data_dir / "tmp").glob("*")
        ]


class _Process:
    """A background process of a node, logging to `log_path`."""

    stop_timeout = 15

    def output(self):
        return self.log_path.read_text()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


class Worker(_Process):
    """A job worker process (RQ) of a node, as `make run` starts it; with
    command="housekeeper", the node's housekeeper."""

    def __init__(self, server, command="worker", **settings):
        self.server = server
        self.env = dict(server.env, **{k: str(v) for k, v in settings.items()})
        self.log_path = server.data_dir / f"{command}-{uuid.uuid4().hex[:6]}.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), command],
            env=self.env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
        )


def housekeeper_pass(server, **settings):
    """One pass of the housekeeper of the node (manage.py housekeeper --once); its output."""
    env = dict(server.env, **{k: str(v) for k, v in settings.items()})
    return manage("housekeeper", "--once", env=env).stdout


class Listener(_Process):
    """The DICOM listener of a node, as a real process sharing the node's database and storage."""

    stop_timeout = 40

    def __init__(self, server, port=None, ae_title="PACSWEB", **settings):
        self.server = server
        self.port = port or free_port()
        self.ae_title = ae_title
        self.env = dict(server.env, PACS_DICOM_PORT=str(self.port), PACS_AE_TITLE=ae_title,
                        **{k: str(v) for k, v in settings.items()})
        self.log_path = server.data_dir / f"listener-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), "dicom_listener", "--bind", "127.0.0.1"],
            env=self.env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
        )

        def listening():
            if self.process.poll() is not None:
                raise RuntimeError(f"listener exited: {self.log_path.read_text()}")
            # Its own line, not only the port: another listener may hold the port already.
            return "listening on" in self.log_path.read_text() and accepts_connections(self.port)

        wait_for(listening, what=f"the listener on port {self.port}")


class Hl7Listener(_Process):
    """The HL7 listener (MLLP) of a node, as a real process sharing the node's database."""

    stop_timeout = 40

    def __init__(self, server, port=None, **settings):
        self.server = server
        self.port = port or free_port()
        self.env = dict(server.env, PACS_HL7_PORT=str(self.port), **{k: str(v) for k, v in settings.items()})
        self.log_path = server.data_dir / f"hl7-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), "hl7_listener", "--bind", "127.0.0.1"],
            env=self.env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
        )

        def listening():
            if self.process.poll() is not None:
                raise RuntimeError(f"HL7 listener exited: {self.log_path.read_text()}")
            return accepts_connections(self.port)

        wait_for(listening, what=f"the HL7 listener on port {self.port}")


def wait_until_up(url, process, timeout=60):
    def healthy():
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        # An error (refused, reset, a 5xx) counts as not yet: wait_for takes OSError as false.
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return response.status == 200

    wait_for(healthy, timeout=timeout, what=f"the server at {url} answering /healthz")


def auth_header(user="admin", password=ADMIN_PASSWORD):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(url, method="GET", body=None, headers=None, auth=True, timeout=60):
    """(status, headers, body bytes) of one HTTP request; never raises on a 4xx/5xx."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if auth:
        req.add_header("Authorization", auth_header() if auth is True else auth)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def request_json(url, **kwargs):
    status, headers, body = request(url, **kwargs)
    return status, json.loads(body) if body else None
