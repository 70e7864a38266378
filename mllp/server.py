"""MLLP over TCP: a threaded server, one thread per connection, stateless.

A block is <VT> message <FS><CR> (HL7 v2.5 Appendix C). A connection carries any
number of messages, one answered before the next is read; a RIS keeps it open for
hours. Nothing is kept between messages, so a load balancer may send any
connection to any node. Every thread gives its database connection back after
each message (the pool holds PACS_DB_POOL_SIZE of them).
"""

import contextlib
import logging
import socket
import socketserver
import threading
import time
from dataclasses import dataclass

from django.db import connection

log = logging.getLogger("pacsweb.hl7")

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
# A message larger than this is refused (its first bytes are kept with the refusal).
MAX_MESSAGE = 16 * 1024 * 1024
# A message begun and not ended within this many seconds is given up (and kept).
MESSAGE_TIMEOUT = 60
# How often a waiting connection looks whether the listener is stopping.
POLL = 0.5


@dataclass
class Block:
    """One MLLP block. `problem`: why it is not a whole message; `ended`: whether
    it ended with <FS> (and can be answered)."""

    data: bytes
    problem: str = ""
    ended: bool = True


def blocks(sock, stopping, timeout=MESSAGE_TIMEOUT, limit=MAX_MESSAGE):
    """The blocks a connection sends, until it closes or the listener stops while
    the connection is between two messages. Bytes outside a block are skipped."""
    pending = b""
    body = None  # inside a block: its bytes so far
    started = 0.0
    too_large = False
    sock.settimeout(POLL)
    while True:
        while pending:
            if body is None:
                start = pending.find(START_BLOCK)
                if start < 0:
                    _skipped(pending)
                    pending = b""
                    break
                _skipped(pending[:start])
                pending, body, started, too_large = pending[start + 1:], bytearray(), time.monotonic(), False
                continue
            end = pending.find(END_BLOCK)
            restart = pending.find(START_BLOCK)
            if restart >= 0 and (end < 0 or restart < end):
                # A new block began before this one ended: the sender gave this one up.
                body.extend(pending[:restart])
                yield Block(bytes(body[:limit]), "the message was cut short: a new message began before its end",
                            ended=False)
                pending, body = pending[restart:], None
                continue
            if end < 0:
                body.extend(pending)
                pending = b""
                if len(body) > limit:
                    too_large = True
                    del body[limit:]
                break
            body.extend(pending[:end])
            pending = pending[end + 1:]
            if pending.startswith(CARRIAGE_RETURN):
                pending = pending[1:]
            problem = f"the message is larger than {limit} bytes" if too_large or len(body) > limit else ""
            yield Block(bytes(body[:limit]), problem)
            body = None
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if body is None and stopping.is_set():
                return
            if body is not None and time.monotonic() - started > timeout:
                yield Block(bytes(body), f"the message was cut short: no end of message within {timeout} s",
                            ended=False)
                return
            continue
        except OSError:
            chunk = b""
        if not chunk:
            if body:
                yield Block(bytes(body), "the message was cut short: the connection closed before its end",
                            ended=False)
            return
        pending += chunk


def _skipped(data):
    if data.strip(b"\r\n\t " + CARRIAGE_RETURN):
        log.warning("HL7: %d bytes outside an MLLP block skipped", len(data))


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        remote = self.client_address[0] if isinstance(self.client_address, tuple) else ""
        with self.server.counting():
            try:
                for block in blocks(sock, self.server.stopping):
                    try:
                        if not block.ended:
                            self.server.receiver.lost(block.data, remote, block.problem)
                            continue
                        reply = self.server.receiver.receive(block.data, remote, block.problem)
                    finally:
                        connection.close()
                    sock.sendall(START_BLOCK + reply.ack + END_BLOCK + CARRIAGE_RETURN)
            except OSError as error:
                log.info("HL7 connection from %s ended: %s", remote, error)


class MllpServer(socketserver.ThreadingTCPServer):
    """The listener: `receiver` answers each message; `stopping` ends idle connections."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address, receiver):
        self.receiver = receiver
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.connections = 0
        super().__init__(address, Handler)

    @contextlib.contextmanager
    def counting(self):
        """Count the open connections (the registry shows them)."""
        with self._lock:
            self.connections += 1
        try:
            yield
        finally:
            with self._lock:
                self.connections -= 1

    def stop(self, grace):
        """Accept no more connections, end the idle ones, let a message being
        handled finish (up to `grace` seconds)."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            time.sleep(0.1)
