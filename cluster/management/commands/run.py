"""Start every process of a node in the foreground; Ctrl-C stops them all.

The single-node launcher behind `make run`: it migrates the database, creates
the first admin account, starts an embedded Redis when REDIS_URL is not set,
then the web server, the DICOM and HL7 listeners and the background processes,
and prints where to point a browser, a script, a modality and the RIS. In a
cluster each node runs the same command with the shared DATABASE_URL, REDIS_URL
and PACS_STORAGE_DIR.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from cluster.embedded import EmbeddedRedis

STOP_TIMEOUT = 30


def stop_on_interrupt():
    """Ctrl-C (SIGINT) stops the launcher, however it was started. A program run in
    the background of a script inherits SIGINT ignored, and Python then leaves it
    ignored: `kill -INT` would not stop the node, and a test waiting for it hangs."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_on_hangup():
    """Closing the terminal (SIGHUP) stops the node as Ctrl-C does: the children, in
    process groups of their own (start()), do not hear the terminal's hangup and
    would outlive a launcher that the signal killed."""
    signal.signal(signal.SIGHUP, signal.default_int_handler)


def start(command, **options):
    """Start a child of the launcher in a process group of its own. Ctrl-C in a
    terminal signals the whole foreground group: the children would each die of
    it at once (Redis first, so the others' last words are connection errors
    and tracebacks) while the launcher reads a dead child as a failure. In their
    own group only the launcher hears Ctrl-C, and it stops them in order."""
    return subprocess.Popen(command, process_group=0, **options)


class Command(BaseCommand):
    help = ("Start the web server, the DICOM and HL7 listeners, the worker and the embedded Redis of this node "
            "(Ctrl-C stops them).")

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=os.environ.get("PACS_HTTP_HOST", "0.0.0.0"),
                            help="address the web server and the DICOM and HL7 listeners listen on (default 0.0.0.0, PACS_HTTP_HOST)")
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("PACS_WEB_WORKERS", "2")))
        parser.add_argument("--web-threads", type=int, default=int(os.environ.get("PACS_WEB_THREADS", "8")))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("PACS_WORKERS", "2")),
                            help="job worker processes (default 2, PACS_WORKERS)")

    def handle(self, *args, bind, web_workers, web_threads, workers, **options):
        stop_on_interrupt()
        stop_on_hangup()
        env = dict(os.environ)
        # glibc gives every thread its own malloc arena; a threaded server's RSS
        # then grows far past what it uses (Orthanc's memory notes).
        env.setdefault("MALLOC_ARENA_MAX", "5")
        env.setdefault("PACS_DATA_DIR", str(settings.DATA_DIR))
        env.setdefault("DJANGO_SETTINGS_MODULE", "pacsweb.settings")
        # What each process logs at INFO (an association, a job done) is for a
        # log collector; a terminal shows warnings and errors.
        env.setdefault("PACS_LOG_LEVEL", "WARNING")
        children = []
        try:
            if not os.environ.get("REDIS_URL"):
                children.append(("redis", self._start_redis(env)))
            call_command("migrate", interactive=False, verbosity=0)
            call_command("ensure_admin")
            try:
                # The OHIF viewer is fetched once and kept: offline, a node runs without it.
                call_command("ohif", "--if-missing")
            except CommandError as error:
                self.stderr.write(f"the OHIF viewer is not installed ({error}); /ohif/ will say so")
            manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
            children.append(("web", start(
                [sys.executable, "-m", "gunicorn", "pacsweb.wsgi",
                 # The deployment's configuration (gthread, timeouts, access log on stdout,
                 # no control socket, the hooks against slow clients); the options below
                 # are this launcher's and take precedence over it.
                 "--config", str(Path(settings.BASE_DIR) / "deploy" / "gunicorn.conf.py"),
                 "--bind", f"{bind}:{settings.HTTP_PORT}",
                 "--workers", str(web_workers), "--threads", str(web_threads),
                 "--graceful-timeout", str(STOP_TIMEOUT), "--log-level", "warning",
                 # The terminal is for the banner, warnings and errors: one line per
                 # request would drown them.
                 "--access-logfile", str(self.access_log())],
                env=env, cwd=settings.BASE_DIR)))
            for index in range(settings.DICOM_PROCESSES):
                children.append((f"dicom-{index + 1}", start(
                    manage + ["dicom_listener", "--bind", bind], env=env, cwd=settings.BASE_DIR)))
            children.append(("hl7", start(manage + ["hl7_listener", "--bind", bind], env=env, cwd=settings.BASE_DIR)))
            for index in range(workers):
                children.append((f"worker-{index + 1}", start(
                    manage + ["worker"], env=env, cwd=settings.BASE_DIR)))
            children.append(("housekeeper", start(manage + ["housekeeper"], env=env, cwd=settings.BASE_DIR)))
            self._wait_listening(children, [("web", settings.HTTP_PORT), ("dicom-1", settings.DICOM_PORT),
                                            ("hl7", settings.HL7_PORT)])
            self._banner()
            # The embedded Redis only carries queues (the database has every job): if it
            # crashes it is started again, and running jobs finish, instead of the whole
            # node stopping under them.
            self._supervise(children, restart={"redis": lambda: self._start_redis(env)})
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(children)
        self.stdout.write("pacsweb stopped.")

    def access_log(self):
        return Path(settings.DATA_DIR) / "access.log"

    def _start_redis(self, env):
        return EmbeddedRedis(settings.DATA_DIR, process_group=0).process

    def _wait_listening(self, children, ports):
        """Return once every (name, port) accepts connections: the banner must not lie."""
        deadline = time.monotonic() + 60
        waiting = list(ports)
        while waiting:
            for name, process in children:
                if process.poll() is not None:
                    raise CommandError(f"the {name} process exited with status {process.returncode} while starting")
            name, port = waiting[0]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    waiting.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    raise CommandError(f"the {name} process did not listen on port {port} within 60 s")
                time.sleep(0.2)

    def _banner(self):
        host = socket.gethostname()
        port = settings.HTTP_PORT
        self.stdout.write(
            "\n"
            f"pacsweb {settings.VERSION} is running (node {settings.NODE_NAME}, data in {settings.DATA_DIR})\n"
            f"  Browser (console):        http://localhost:{port}/   (or http://{host}:{port}/)\n"
            f"  REST API base URL:        http://localhost:{port}/   (HTTP Basic, Orthanc-compatible)\n"
            f"  DICOM (for modalities):   AE title {settings.AE_TITLE}, host {host}, port {settings.DICOM_PORT}\n"
            f"  RIS (HL7 v2 / MLLP):      {host}:{settings.HL7_PORT}\n"
            f"  Access log:               {self.access_log()}\n"
            "  Stop with Ctrl-C.\n"
        )
        self.stdout.flush()

    def _supervise(self, children, restart=None):
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        while not stop:
            for index, (name, process) in enumerate(children):
                if process.poll() is not None:
                    if restart and name in restart:
                        self.stderr.write(f"the {name} process exited with status {process.returncode}; "
                                          "starting it again\n")
                        children[index] = (name, restart[name]())
                        continue
                    raise CommandError(f"the {name} process exited with status {process.returncode}; stopping the node")
            time.sleep(0.5)

    def _stop(self, children):
        for _, process in reversed(children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        try:
            for _, process in reversed(children):
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
        except KeyboardInterrupt:
            # A second Ctrl-C: the user will not wait for in-flight work.
            for _, process in children:
                if process.poll() is None:
                    process.kill()
                    process.wait()
