"""gunicorn configuration of a pacsweb node's web server.

    gunicorn -c /opt/pacsweb/deploy/gunicorn.conf.py pacsweb.wsgi

`manage.py run` (cluster/management/commands/run.py) runs gunicorn with this
file too, in a process it forks, overriding a few options on its command line;
here it serves a node whose processes are started one by one (systemd units,
containers).
Settings come from the environment variables of README.md's table; an operator
can still override any of them for one start with GUNICORN_CMD_ARGS, which
gunicorn applies after this file (e.g. GUNICORN_CMD_ARGS="--max-requests 0").
"""

import logging
import os
import socket
import struct
from pathlib import Path


def _env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


# The code directory is the parent of deploy/: the config then works whatever
# the current directory of whoever starts it (systemd, a shell, a container).
chdir = str(Path(__file__).resolve().parent.parent)
wsgi_app = "pacsweb.wsgi:application"

_host = os.environ.get("PACS_HTTP_HOST", "") or "0.0.0.0"
_port = _env_int("PACS_HTTP_PORT", 8000)
bind = [f"[{_host}]:{_port}" if ":" in _host else f"{_host}:{_port}"]

# gthread: a thread is tied up for the whole of a streamed upload or download
# (WADO-RS, ZIP archives, 4 GB POSTs) while the GIL is released in socket and
# disk I/O, so threads carry the I/O-bound load and processes the CPU-bound
# part (DICOM parsing, rendering). Processes beyond the cores buy nothing:
# size with PACS_WEB_WORKERS ~ cores given to the web server.
# pacsweb's gthread (pacsweb/webworker.py) reads each request head in the event
# loop and gives it to a thread only once it is whole (PACS_HTTP_HEADER_TIMEOUT):
# clients that trickle their headers hold no thread. A thread that answered a
# kept-alive connection waits PACS_HTTP_LINGER_MS for that client's next head.
worker_class = "pacsweb.webworker.HeadFirstWorker"
workers = _env_int("PACS_WEB_WORKERS", 2)
threads = _env_int("PACS_WEB_THREADS", 8)

# For gthread this bounds a worker whose event loop stopped answering the
# master (hung), not a request: a one-hour download is not cut by it. It is
# long because on a loaded node CPU-bound threads (pixel decoding, deflate)
# can starve the loop, and a kill takes every in-flight request of the worker.
timeout = 300
# What a stopping worker gives its in-flight requests. systemd's
# TimeoutStopSec and Docker's stop_grace_period must be longer.
graceful_timeout = 30
# Behind the load balancer each request has its own server connection
# (haproxy.cfg: http-server-close), so this only serves clients that talk to a
# node directly (scripts storing many files on one connection). Kept short:
# an idle kept-alive connection still counts against worker_connections.
keepalive = 5

# Recycle a worker after this many requests (plus a random share of the
# jitter, so that the workers of a node are not recycled together) to bound
# memory growth from fragmentation or a slow leak in a dependency. The price:
# a recycled worker stops accepting, and its in-flight requests get
# graceful_timeout to finish, so a long download on it can be cut. High
# enough that at a sustained ~100 requests/s a worker recycles every ~17 min.
max_requests = 100_000
max_requests_jitter = 10_000

# Not preloaded: every worker imports pacsweb.wsgi itself, which starts that
# worker's heartbeat thread in the node registry (threads do not survive the
# fork from a preloaded master), and a worker recycle then also reloads code.
# Under `manage.py run` the master is forked from a launcher that imported the
# URLconf and every view already: the workers share those pages all the same.
preload_app = False

# gunicorn >= 25.1 opens a control socket at one default path per user: two
# pacsweb servers of one user (two nodes on one machine, a node and a test
# run) would fight over it, and nothing here uses it. Older versions ignore
# unknown names in this file.
control_socket_disable = True

# The addresses of the load balancers whose X-Forwarded-Proto (and
# X-Forwarded-For in the access log) are trusted. It matters when HAProxy
# terminates TLS: DICOMweb answers carry absolute URLs, which must then say
# https. Set FORWARDED_ALLOW_IPS to the balancers' addresses (comma-separated,
# CIDR allowed); never "*" on a node that clients can reach directly.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Logs on stdout/stderr: journald or the container runtime keeps them.
accesslog = "-"
errorlog = "-"
logger_class = "pacsweb.webworker.AccessLogger"
loglevel = (os.environ.get("PACS_LOG_LEVEL", "") or "info").lower()
# The default format plus the client as the load balancer saw it and the
# duration in ms; %(u)s is the HTTP Basic user (who stored or deleted what).
access_log_format = (
    '%(h)s %({x-forwarded-for}i)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
)

# The workers' heartbeat files: on a container's overlay filesystem or a slow
# disk a write can stall long enough for the master to think a worker hung.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"


# A client that opens a connection and then sends its request (or reads the
# answer) a byte now and then would hold a thread for as long as it likes:
# gthread reads with blocking sockets and no deadline. A receive and send
# timeout on the listening sockets is inherited by every accepted connection
# and survives gunicorn's switches between blocking and non-blocking mode, so
# a read or write that makes no progress for PACS_CLIENT_TIMEOUT seconds fails
# and the thread is free again (a body cut short that way answers 408).
def when_ready(server):
    seconds = _env_int("PACS_CLIENT_TIMEOUT", 60)
    if seconds <= 0:
        return
    limit = struct.pack("ll", seconds, 0)
    for listener in server.LISTENERS:
        for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
            listener.sock.setsockopt(socket.SOL_SOCKET, option, limit)


class _SilentClientFilter:
    """gunicorn logs a dropped silent client as a socket error with a traceback:
    one line is what it is worth."""

    def filter(self, record):
        if record.getMessage() == "Socket error processing request." and record.exc_info \
                and isinstance(record.exc_info[1], (BlockingIOError, TimeoutError)):
            record.msg, record.args, record.exc_info, record.exc_text = (
                "a client stayed silent past PACS_CLIENT_TIMEOUT: its connection was dropped", (), None, None)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def post_worker_init(worker):
    worker.log.error_log.addFilter(_SilentClientFilter())


# An `Expect:` header with an empty value asks for nothing (RFC 9110 §10.1.1:
# the field is a list of expectations, and an empty list has none), and libcurl
# clients send exactly that to turn 100-continue off (Orthanc's own tools and
# many scripts do). gunicorn answers anything but "100-continue" with 417, so
# an empty one is dropped before its header policy sees it. Orthanc ignores it.
def _ignore_empty_expect():
    from gunicorn.http.message import HeaderPolicy

    apply_policy = HeaderPolicy._apply_header_policy

    def apply_header_policy(self, name, value, *args, **kwargs):
        if name == "EXPECT" and not value.strip(" \t,"):
            return None
        return apply_policy(self, name, value, *args, **kwargs)

    HeaderPolicy._apply_header_policy = apply_header_policy


_ignore_empty_expect()
