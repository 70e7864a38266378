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
"""

import errno
import os
import selectors
import socket
import time
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

HEAD_END = b"\r\n\r\n"
# The request line and every header: gunicorn's own limits (8190 + 100 x 8190)
# are far above what a real client sends; a head larger than this is refused.
HEAD_LIMIT = 64 * 1024
TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
             b"Content-Length: 59\r\n\r\nthe request head did not arrive within PACS_HTTP_HEADER_TIMEOUT\n")
TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")


def _header_timeout():
    value = os.environ.get("PACS_HTTP_HEADER_TIMEOUT", "").strip()
    return float(value) if value else 10.0


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
        self.header_timeout = _header_timeout()
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
            super().enqueue_req(conn)
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
            super().enqueue_req(conn)
        elif len(conn.head) > HEAD_LIMIT:
            self._drop(conn, TOO_LARGE)

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
