"""Start every process of a node in the foreground; Ctrl-C stops them all.

The single-node launcher behind `make run`: it migrates the database, creates
the first admin account, starts an embedded Redis when REDIS_URL is not set,
then the web server, the DICOM and HL7 listeners and the background processes,
and prints where to point a browser, a script, a modality and the RIS. In a
cluster each node runs the same command with the shared DATABASE_URL, REDIS_URL
and PACS_STORAGE_DIR.

The launcher is a fork server: it imports Django and every module the roles
need once, then forks each role (web server, listeners, workers, housekeeper)
from itself instead of starting a new interpreter per role. The children share
the launcher's pages until they write to them: an idle node holds about a third
of the memory it held with one interpreter per process (docs/benchmarks.md,
"Memory of a node").
"""

import ast
import atexit
import ctypes
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from django.conf import settings
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from cluster.embedded import EmbeddedRedis

STOP_TIMEOUT = 30


def stop_on_interrupt():
    """Ctrl-C (SIGINT) stops the launcher, however it was started. A program run in
    the background of a script inherits SIGINT ignored, and Python then leaves it
    ignored: `kill -INT` would not stop the node, and a test waiting for it hangs."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_on_hangup():
    """Closing the terminal (SIGHUP) stops the node as Ctrl-C does: the children, in
    process groups of their own (fork()), do not hear the terminal's hangup and
    would outlive a launcher that the signal killed."""
    signal.signal(signal.SIGHUP, signal.default_int_handler)


# The roles `manage.py run` forks, by command name (the same coupling as
# `manage.py dicom_listener` on a command line: cluster/ does not import the
# transports).
ROLE_COMMANDS = ("dicom_listener", "hl7_listener", "worker", "housekeeper")
PR_SET_NAME = 15  # prctl(2)
M_ARENA_MAX = -8  # mallopt(3)


class Forked:
    """A role forked from the launcher, with the part of subprocess.Popen the
    supervisor uses (pid, returncode, poll, wait, send_signal, kill)."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, signum):
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self):
        self.send_signal(signal.SIGKILL)


def fork(name, main):
    """Run main() in a child of the launcher, named `pacs-<name>` in ps and top;
    the child's exit status is what main returns or raises, as for the
    `manage.py` command it replaces.

    The child is in a process group of its own (the embedded Redis too). Ctrl-C
    in a terminal signals the whole foreground group: the children would each
    die of it at once (Redis first, so the others' last words are connection
    errors and tracebacks) while the launcher reads a dead child as a failure.
    In their own group only the launcher hears Ctrl-C, and it stops them in order."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return Forked(pid)
    status = 1
    try:
        os.setpgid(0, 0)
        # What a new interpreter would have: the launcher's own handlers are its.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # The launcher's exit handlers are its own; the role registers its own
        # (the metrics' last flush), run below as the interpreter would run them.
        atexit._clear()
        atexit.register(logging.shutdown)
        _set_process_name(f"pacs-{name}")
        main()
        status = 0
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except KeyboardInterrupt:
        status = 130
    except BaseException:
        traceback.print_exc()
    finally:
        # What the interpreter does when it exits (Py_FinalizeEx): wait for the
        # threads that are not daemons, run the exit handlers, flush the standard
        # streams; then leave, never back into the launcher's stack (its finally
        # would stop the node).
        try:
            threading._shutdown()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)


def _set_process_name(name):
    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def management_command(name, *args):
    """main() of a role: `manage.py <name> <args>` in this interpreter."""
    def main():
        load_command_class(get_commands()[name], name).run_from_argv(["manage.py", name, *args])
    return main


def gunicorn(args):
    """main() of the web role: the gunicorn command line in this interpreter."""
    def main():
        from gunicorn.app.wsgiapp import WSGIApplication

        sys.argv = ["gunicorn", *args]
        WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog="gunicorn").run()
    return main


def preload():
    """Import, once in the launcher, what every role imports at its start, so the
    forked roles share it: the role commands (pydicom, pynetdicom, rq, the
    archive), the URLconf with every view, the middleware, and gunicorn's
    worker class."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.urls import get_resolver
    from gunicorn.app.wsgiapp import WSGIApplication  # noqa: F401
    from gunicorn.arbiter import Arbiter  # noqa: F401
    from gunicorn.util import load_class

    for name in ROLE_COMMANDS:
        load_command_class(get_commands()[name], name)
    get_resolver().url_patterns  # noqa: B018 (imports every view)
    WSGIHandler()
    # The worker class of deploy/gunicorn.conf.py, by name as gunicorn loads it.
    load_class(_gunicorn_worker_class())


def _gunicorn_worker_class():
    """deploy/gunicorn.conf.py's worker_class, read without running the file (it
    patches gunicorn, which the web role's gunicorn does when it loads it)."""
    path = Path(settings.BASE_DIR) / "deploy" / "gunicorn.conf.py"
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "worker_class" for t in node.targets):
            return ast.literal_eval(node.value)
    return "sync"


def forget_connections():
    """Close what must not cross a fork: a child writing on its parent's database
    socket (or a pool whose threads stayed in the parent) corrupts both."""
    for connection in connections.all(initialized_only=True):
        connection.close()
        if connection.alias in getattr(connection, "_connection_pools", {}):
            connection.close_pool()


def limit_malloc_arenas(value):
    try:
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, int(value))
    except (OSError, AttributeError, ValueError):  # not glibc; a value glibc would ignore too
        pass


def use_log_level(level):
    """The roles' logging level: each configures logging from settings.LOGGING
    again (gunicorn's workers import pacsweb.wsgi), which was read from the
    environment before the launcher set PACS_LOG_LEVEL."""
    settings.LOGGING["root"]["level"] = level
    logging.getLogger().setLevel(level)


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
        # then grows far past what it uses (Orthanc's memory notes). glibc reads
        # the variable when a program starts: the forked roles get the launcher's
        # setting, made here.
        env.setdefault("MALLOC_ARENA_MAX", "5")
        limit_malloc_arenas(env["MALLOC_ARENA_MAX"])
        env.setdefault("PACS_DATA_DIR", str(settings.DATA_DIR))
        env.setdefault("DJANGO_SETTINGS_MODULE", "pacsweb.settings")
        # What each process logs at INFO (an association, a job done) is for a
        # log collector; a terminal shows warnings and errors.
        env.setdefault("PACS_LOG_LEVEL", "WARNING")
        # The roles are forked: they read this environment (gunicorn's
        # configuration does) and the logging level set here, not a new one.
        os.environ.update(env)
        use_log_level(env["PACS_LOG_LEVEL"])
        children = []
        try:
            if not os.environ.get("REDIS_URL"):
                children.append(("redis", self._start_redis(env)))
            # In a child: the launcher then forks the roles with no database
            # connection, no thread (a transaction replayed while nodes start
            # together counts a metric, whose sender is a thread) and none of
            # what migrating loads in its heap.
            children.append(("setup", fork("setup", self._set_up)))
            if children[-1][1].wait() != 0:
                raise CommandError("setting up the node failed (see above)")
            children.pop()
            preload()
            forget_connections()
            # Objects the launcher made so far are never collected: a collection
            # in a child would otherwise write to every shared page holding one.
            gc.collect()
            gc.freeze()
            if threading.active_count() > 1:
                # A thread does not cross a fork, but a lock it held does.
                raise CommandError("the launcher has threads running; it cannot fork the roles safely: "
                                   + ", ".join(t.name for t in threading.enumerate()))
            os.chdir(settings.BASE_DIR)
            children.append(("web", fork("web", gunicorn(
                ["pacsweb.wsgi",
                 # The deployment's configuration (gthread, timeouts, access log on stdout,
                 # no control socket, the hooks against slow clients); the options below
                 # are this launcher's and take precedence over it.
                 "--config", str(Path(settings.BASE_DIR) / "deploy" / "gunicorn.conf.py"),
                 "--bind", f"{bind}:{settings.HTTP_PORT}",
                 "--workers", str(web_workers), "--threads", str(web_threads),
                 "--graceful-timeout", str(STOP_TIMEOUT), "--log-level", "warning",
                 # The terminal is for the banner, warnings and errors: one line per
                 # request would drown them.
                 "--access-logfile", str(self.access_log())]))))
            for index in range(settings.DICOM_PROCESSES):
                children.append((f"dicom-{index + 1}", fork(
                    f"dicom-{index + 1}", management_command("dicom_listener", "--bind", bind))))
            children.append(("hl7", fork("hl7", management_command("hl7_listener", "--bind", bind))))
            for index in range(workers):
                children.append((f"worker-{index + 1}", fork(f"worker-{index + 1}", management_command("worker"))))
            children.append(("housekeeper", fork("housekeeper", management_command("housekeeper"))))
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

    def _set_up(self):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("ensure_admin")
        try:
            # The OHIF viewer is fetched once and kept: offline, a node runs without it.
            call_command("ohif", "--if-missing")
        except CommandError as error:
            self.stderr.write(f"the OHIF viewer is not installed ({error}); /ohif/ will say so")
        self.stdout.flush()

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
