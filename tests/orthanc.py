"""A throwaway Orthanc (Debian's package) on loopback, for benchmarks that compare with it
and the differential tests (tests/compat/) that check pacsweb answers as it does.

    with OrthancServer("postgres", postgres_url=url) as orthanc:
        http.client.HTTPConnection(...).request("POST", "/instances", body,
                                                {"Authorization": orthanc.auth_header})

Each server lives in its own temporary directory (configuration, storage, SQLite
index, log) with free HTTP and DICOM ports, and is killed and removed on exit.
With kind="postgres" the index goes to a fresh database created on the given
PostgreSQL server (dropped on exit); the DICOM files stay on the filesystem in
both kinds, as pacsweb keeps them, so only the index differs.
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg

from tests.servers import free_port, with_database

ORTHANC = "/usr/sbin/Orthanc"
POSTGRESQL_INDEX_PLUGIN = "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"
USER = "bench"
PASSWORD = "bench-password"


def version():
    """The Orthanc version string, e.g. "1.10.1"."""
    out = subprocess.run([ORTHANC, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


class OrthancServer:
    """A running Orthanc: `url` (REST base, also `http_port`), `auth_header` (HTTP Basic),
    `dicom_port` and `aet` (its DICOM SCP), `directory`, `log()`, and with kind="postgres"
    `database_url` (its index database).

    `config` entries override the generated configuration (e.g. "HttpThreadsCount",
    "DicomModalities", or a "PostgreSQL" dict replacing the generated one);
    `plugins` are extra plugin paths to load.
    """

    def __init__(self, kind="sqlite", postgres_url=None, aet="ORTHANC", config=None, plugins=(),
                 startup_timeout=60):
        if kind not in ("sqlite", "postgres"):
            raise ValueError(f"kind must be sqlite or postgres, not {kind!r}")
        if kind == "postgres" and not postgres_url:
            raise ValueError("kind='postgres' needs postgres_url")
        self.kind = kind
        self.aet = aet
        self._postgres_url = postgres_url
        self._plugins = list(plugins)
        self._overrides = dict(config or {})
        self._startup_timeout = startup_timeout
        self.database_url = None
        self.process = None

    def __enter__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="orthanc-"))
        self.log_path = self.directory / "orthanc.log"
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def _start(self):
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.auth_header = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        config = {
            "Name": "bench",
            "StorageDirectory": str(self.directory / "storage"),
            "IndexDirectory": str(self.directory / "index"),
            "TemporaryDirectory": str(self.directory / "tmp"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            # Loopback only: no remote access, and credentials required anyway so
            # that clients pay the same Basic authentication as against pacsweb.
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            # Written explicitly although they are the defaults of 1.10: files are
            # fsynced before being acknowledged (as pacsweb's PACS_STORAGE_FSYNC)
            # and stored uncompressed.
            "SyncStorageArea": True,
            "StorageCompression": False,
            "Plugins": list(self._plugins),
        }
        (self.directory / "tmp").mkdir()
        if self.kind == "postgres":
            config["Plugins"].append(POSTGRESQL_INDEX_PLUGIN)
            config["PostgreSQL"] = self._create_database()
        config.update(self._overrides)
        config_path = self.directory / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2))

        # DCMTK (Orthanc's DICOM layer) leaves Nagle's algorithm on unless this is
        # set; with it on, small PDUs wait for delayed ACKs (~40 ms per exchange).
        env = dict(os.environ, TCP_NODELAY="1")
        with open(self.log_path, "w") as log:  # Orthanc keeps its own descriptor
            self.process = subprocess.Popen(
                [ORTHANC, str(config_path)], cwd=self.directory, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        self._wait_until_up()

    def _create_database(self):
        """A fresh database for the index, and the plugin's settings to reach it."""
        name = self._database = "orthanc_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self._postgres_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
            # The URL may name the server by a Unix socket directory (?host=/path)
            # and omit the port; libpq's resolved values are what the plugin needs.
            host, port, user, password = conn.info.host, conn.info.port, conn.info.user, conn.info.password
        self.database_url = with_database(self._postgres_url, name)
        return {
            "EnableIndex": True,
            "EnableStorage": False,
            "Host": host,
            "Port": int(port),
            "Database": name,
            "Username": user,
            "Password": password or "",
        }

    def _wait_until_up(self):
        deadline = time.monotonic() + self._startup_timeout
        request = urllib.request.Request(self.url + "/system", headers={"Authorization": self.auth_header})
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with status {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"Orthanc did not answer /system within {self._startup_timeout} s:\n{self.log()}")

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        """Kill Orthanc, drop its database, remove its directory."""
        if self.process is not None and self.process.poll() is None:
            # A throwaway server: nothing to flush, so no graceful shutdown.
            self.process.kill()
            self.process.wait(30)
        if self.database_url:
            with psycopg.connect(self._postgres_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self._database} WITH (FORCE)")
            self.database_url = None
        shutil.rmtree(self.directory, ignore_errors=True)
