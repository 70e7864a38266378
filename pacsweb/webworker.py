"""The web server's worker: gunicorn's gthread, but a thread is given a connection
only once its request head (request line and headers) has arrived whole.

gthread hands a connection to a thread as soon as its first byte arrives, and the
thread then reads the head with blocking reads: 24 clients sending one header
byte every 5 s held every thread, and every other client waited for 95 s (the
socket timeout only catches a client silent for PACS_CLIENT_TIMEOUT). Here the
head is read in the worker's event loop, without blocking, into a buffer of at
most HEAD_LIMIT bytes, and it must be complete within PACS_HTTP_HEADER_TIMEOUT
seconds of the connection becoming readable (new, or kept alive): a slow client
then costs a socket and a small buffer, never a thread, and is answered 408 and
closed at its deadline. The body is read by the thread as before: a request
without valid credentials is answered (401) without its body being read, and
gunicorn drains at most a little of it for at most 5 s; an authenticated body
that trickles is cut by PACS_MIN_UPLOAD_RATE (archive/spool.py) and
PACS_CLIENT_TIMEOUT.

A thread that has answered a kept-alive connection waits a moment
(PACS_HTTP_LINGER_MS) for that client's next request, and serves it itself when its
head has arrived whole (a script storing files one after another, a viewer's
burst of requests): handing the connection back to the event loop and from there
to a thread again cost 0.2 ms of the 0.63 ms of CPU of a `GET /system`. It never waits
while other requests are queued for a thread, and a head that has not arrived whole
goes to the event loop as before, so no client holds a thread with a slow head.
"""

import errno
import logging
import os
import re
import select
import selectors
import socket
import ssl
import threading
import time
import traceback
from functools import partial

from gunicorn import glogging
from gunicorn.workers.gthread import TConn, ThreadWorker

HEAD_END = b"\r\n\r\n"
# The request line and every header: gunicorn's own limits (8190 + 100 x 8190)
# are far above what a real client sends; a head larger than this is refused.
HEAD_LIMIT = 64 * 1024
_TIMED_OUT_TEXT = b"the request head did not arrive within PACS_HTTP_HEADER_TIMEOUT\n"
TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(_TIMED_OUT_TEXT), _TIMED_OUT_TEXT))
TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")


def _env_float(name, default):
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


class HeadConn(TConn):
    """A connection whose request head may have been read ahead by the event loop."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.head = b""
        self.head_deadline = None

    def init(self):
        super().init()
        if self.head and self.parser is not None:
            # What the event loop read goes back in front of what the parser reads next.
            self.parser.unreader.unread(self.head)
            self.head = b""


class HeadFirstWorker(ThreadWorker):
    def init_process(self):
        self.heading = {}  # socket -> HeadConn whose head is being read
        self.header_timeout = _env_float("PACS_HTTP_HEADER_TIMEOUT", 10.0)
        self.linger_ms = max(0.0, _env_float("PACS_HTTP_LINGER_MS", 2.0))
        # Connections given to the thread pool and not yet taken by a thread: a
        # thread lingers for its client's next request only while there are none.
        self.queued = 0
        self.queued_lock = threading.Lock()
        super().init_process()

    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self.enqueue_req(HeadConn(self.cfg, client_sock, client_addr, listener.getsockname()))

    def enqueue_req(self, conn):
        """Read the head first (in the event loop); then the thread pool takes over."""
        pending = conn.initialized and conn.parser is not None and conn.parser.unreader.buf.getvalue()
        if not isinstance(conn, HeadConn) or pending or conn.head_deadline is not None:
            self._submit(conn)
            return
        conn.sock.setblocking(False)
        conn.head_deadline = time.monotonic() + self.header_timeout
        self.heading[conn.sock] = conn
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_readable, conn))

    def _on_head_readable(self, conn, client):
        try:
            data = conn.sock.recv(HEAD_LIMIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        conn.head += data
        start = len(conn.head) - len(conn.head.lstrip(b"\r\n"))  # RFC 9112 §2.2: empty lines before a request
        if HEAD_END in conn.head[start:]:
            self._stop_heading(conn)
            conn.head_deadline = None
            conn.data_ready = True
            conn.sock.setblocking(True)
            self._submit(conn)
        elif len(conn.head) > HEAD_LIMIT:
            self._drop(conn, TOO_LARGE)

    def _submit(self, conn):
        with self.queued_lock:
            self.queued += 1
        super().enqueue_req(conn)

    def handle(self, conn):
        """Serve the connection's request, then its next ones while each arrives whole
        within the linger time (in the worker thread)."""
        with self.queued_lock:
            self.queued -= 1
        served = super().handle(conn)
        while served is True and self._next_head_arrived(conn):
            served = super().handle(conn)
        return served

    def _next_head_arrived(self, conn):
        """Whether the client's next request head is whole in the socket's buffer within
        the linger time. Only looked at, not read: the parser reads it."""
        if self.linger_ms <= 0 or not self.alive or self.queued > 0 or conn.parser.unreader.buf.getvalue() \
                or isinstance(conn.sock, ssl.SSLSocket):
            # TLS served by gunicorn itself (GUNICORN_CMD_ARGS=--certfile): what has arrived
            # cannot be peeked at through the TLS layer; the event loop waits for it.
            return False
        try:
            waiting = select.poll()
            waiting.register(conn.sock, select.POLLIN)
            if not waiting.poll(self.linger_ms):
                return False
            arrived = conn.sock.recv(HEAD_LIMIT, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (OSError, ValueError):
            return False  # closed or reset: the event loop finds out as before
        return HEAD_END in arrived.lstrip(b"\r\n")

    def _stop_heading(self, conn):
        self.heading.pop(conn.sock, None)
        try:
            self.poller.unregister(conn.sock)
        except (OSError, KeyError, ValueError):
            pass

    def _drop(self, conn, answer=None):
        self._stop_heading(conn)
        if answer:
            try:
                conn.sock.send(answer)
            except OSError:
                pass
        self.nr_conns -= 1
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.heading.values() if c.head_deadline <= now]:
            # A client that has sent nothing of its next request on a kept-alive
            # connection is simply closed; one in the middle of a head is told why.
            self._drop(conn, TIMED_OUT if conn.head.strip(b"\r\n") else None)


class AccessLogger(glogging.Logger):
    """gunicorn's logger, computing only the atoms the access log format names: it
    built all of them, with a copy of every request header, response header and
    environ variable, for every request (a twentieth of a small store's CPU)."""

    _ATOMS = {
        "h": lambda log, resp, req, environ, took: environ.get("REMOTE_ADDR", "-"),
        "l": lambda log, resp, req, environ, took: "-",
        "u": lambda log, resp, req, environ, took: log._get_user(environ) or "-",
        "t": lambda log, resp, req, environ, took: log.now(),
        "r": lambda log, resp, req, environ, took: "%s %s %s" % (
            environ["REQUEST_METHOD"], environ["RAW_URI"], environ["SERVER_PROTOCOL"]),
        "s": lambda log, resp, req, environ, took: (
            resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status),
        "m": lambda log, resp, req, environ, took: environ.get("REQUEST_METHOD"),
        "U": lambda log, resp, req, environ, took: environ.get("PATH_INFO"),
        "q": lambda log, resp, req, environ, took: environ.get("QUERY_STRING"),
        "H": lambda log, resp, req, environ, took: environ.get("SERVER_PROTOCOL"),
        "b": lambda log, resp, req, environ, took: (
            getattr(resp, "sent", None) is not None and str(resp.sent) or "-"),
        "B": lambda log, resp, req, environ, took: getattr(resp, "sent", None),
        "f": lambda log, resp, req, environ, took: environ.get("HTTP_REFERER", "-"),
        "a": lambda log, resp, req, environ, took: environ.get("HTTP_USER_AGENT", "-"),
        "T": lambda log, resp, req, environ, took: took.seconds,
        "D": lambda log, resp, req, environ, took: took.seconds * 1000000 + took.microseconds,
        "M": lambda log, resp, req, environ, took: took.seconds * 1000 + int(took.microseconds / 1000),
        "L": lambda log, resp, req, environ, took: "%d.%06d" % (took.seconds, took.microseconds),
        "p": lambda log, resp, req, environ, took: "<%s>" % os.getpid(),
    }

    def access(self, resp, req, environ, request_time):
        """The line written straight to gunicorn's own handler when it is the only one
        and formats nothing but the message (the deployment's case): the logging
        module's record, formatter and filters were 2-4 % of a small read's CPU.
        Any other set-up (a log configuration, syslog, a filter) goes through logging."""
        handler = self._direct_handler()
        if handler is not None:
            try:
                line = self.cfg.access_log_format % self.atoms_wrapper_class(
                    self.atoms(resp, req, environ, request_time))
                handler.acquire()
                try:
                    # A file handler's stream is None until its first record, or once closed
                    # (a reopen, a fork): logging's own emit opens it again.
                    if handler.stream is not None:
                        handler.stream.write(line + handler.terminator)
                        handler.flush()
                        return
                finally:
                    handler.release()
            except Exception:
                self.error(traceback.format_exc())
                return
        super().access(resp, req, environ, request_time)

    def _direct_handler(self):
        log = self.access_log
        handlers = getattr(log, "handlers", None)
        if not handlers or len(handlers) != 1 or log.filters or log.propagate or not log.isEnabledFor(logging.INFO):
            return None
        handler = handlers[0]
        if not getattr(handler, "_gunicorn", False) or type(handler) not in (logging.StreamHandler, logging.FileHandler) \
                or handler.filters or handler.level > logging.INFO or handler.formatter is None \
                or handler.formatter._fmt != self.access_fmt:
            return None
        return handler

    def atoms(self, resp, req, environ, request_time):
        names = self._names()
        if names is None:
            return super().atoms(resp, req, environ, request_time)
        atoms = {}
        for name in names:
            if name in self._ATOMS:
                atoms[name] = self._ATOMS[name](self, resp, req, environ, request_time)
            elif name.endswith("}i"):
                wanted = name[1:-2]
                for header, value in getattr(req, "headers", ()):
                    if header.lower() == wanted:
                        atoms[name] = value
            elif name.endswith("}o"):
                wanted = name[1:-2]
                for header, value in resp.headers:
                    if header.lower() == wanted:
                        atoms[name] = value
            elif name.endswith("}e"):
                wanted = name[1:-2]
                for key, value in environ.items():
                    if key.lower() == wanted:
                        atoms[name] = value
        return atoms

    def _names(self):
        """The atoms of the configured format, lowercased as gunicorn looks them up;
        None when one is not understood here (gunicorn's own atoms() then)."""
        form = self.cfg.access_log_format
        if getattr(self, "_names_of", (None,))[0] != form:
            names = []
            for name in re.findall(r"%\(([^)]*)\)", form):
                if name.startswith("{"):
                    if not re.fullmatch(r"\{[^}]*\}[ioe]", name):
                        names = None
                        break
                    name = name.lower()
                elif name not in self._ATOMS:
                    names = None
                    break
                names.append(name)
            self._names_of = (form, names)
        return self._names_of[1]
