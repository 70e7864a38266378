"""The HL7 listener: orders (ORM^O01, OMI^O23) and patient updates (ADT^A08, A31)
from the RIS, over MLLP on PACS_HL7_PORT.

Every node runs one; each message is answered from the shared database alone, so
a load balancer may spread connections over the nodes. SIGTERM stops accepting
connections, ends the idle ones, lets a message being handled finish, and exits.
"""

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cluster import registry
from mllp import fields
from mllp.receiver import Receiver
from mllp.server import MllpServer

log = logging.getLogger("pacsweb.hl7")

STOP_GRACE = 30


class Command(BaseCommand):
    help = "Run the HL7 v2 listener (MLLP) on PACS_HL7_PORT: orders and patient updates for the worklist."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.HL7_PORT)
        parser.add_argument("--bind", default="0.0.0.0")

    def handle(self, *args, port, bind, **options):
        try:
            paths = fields.table(settings.HL7_FIELDS)
        except ValueError as error:
            raise CommandError(f"PACS_HL7_FIELDS: {error}")

        # Installed before the port opens: a SIGTERM as soon as it accepts still
        # means "finish and exit 0".
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())

        try:
            server = MllpServer((bind, port), Receiver(paths))
        except OSError as error:
            raise CommandError(f"cannot listen on {bind}:{port}: {error.strerror or error}")
        registry.start_heartbeat("hl7", associations=lambda: server.connections)
        thread = threading.Thread(target=server.serve_forever, name="hl7-acceptor", daemon=True)
        thread.start()
        log.info("HL7 listener on %s:%d", bind, port)
        self.stdout.write(f"HL7 listener listening on {bind}:{port}")
        self.stdout.flush()

        # A timed wait: the signal may be delivered while the main thread sleeps
        # in an untimed wait, and Python runs the handler only between bytecodes.
        while not stop.wait(0.2):
            pass
        server.stop(STOP_GRACE)
        log.info("HL7 listener stopped")
