"""One HL7 message in, its acknowledgement out: the listener's only handler.

It translates (hl7v2, fields) and calls one archive service (worklist.apply_orders
or worklist.update_patient); every failure becomes an ACK here, in one place: AR
for a message that cannot be read as one we take (garbled, cut short, a wrong
MSH, an unsupported type), AE for one we read but could not apply. Every message
is kept with its outcome: an accepted one in the same unit of work as its effect.
"""

import logging
from dataclasses import dataclass

from django.conf import settings

from archive import worklist
from archive.errors import DatabaseBusy, InvalidOrder, UnknownOrder
from mllp import fields, hl7v2
from mllp.hl7v2 import Rejected

log = logging.getLogger("pacsweb.hl7")

ORDERS, PATIENT = "orders", "patient"
# (MSH-9.1, MSH-9.2) → what the message carries.
MESSAGES = {("ORM", "O01"): ORDERS, ("OMI", "O23"): ORDERS, ("ADT", "A08"): PATIENT, ("ADT", "A31"): PATIENT}


@dataclass
class Reply:
    """What the listener sends back (None: nothing, there is no message to answer)."""

    ack: bytes | None
    code: str


class Receiver:
    """Receives the messages of one listener, with its field table."""

    def __init__(self, paths):
        self.paths = paths

    def receive(self, data, remote_address="", problem=""):
        """The Reply to one MLLP block. `problem`: why the block is not a whole
        message (cut short by the sender, too large); it is then kept, answered AR
        when it has an end, and not applied."""
        received = worklist.Received(raw=data.decode("latin-1"), remote_address=remote_address,
                                     node=settings.NODE_NAME)
        header = hl7v2.Header()
        try:
            header = hl7v2.read_header(data)
            received.control_id, received.message_type = header.control_id, header.message_type
            received.raw = hl7v2.decode(data, header)
            if problem:
                raise Rejected("AR", hl7v2.SEGMENT_SEQUENCE_ERROR, problem)
            message = hl7v2.parse(received.raw)
            kind = MESSAGES.get((header.message_code, header.trigger_event))
            if kind is None:
                known = {code for code, _ in MESSAGES}
                error = hl7v2.UNSUPPORTED_EVENT if header.message_code in known else hl7v2.UNSUPPORTED_MESSAGE_TYPE
                raise Rejected("AR", error, f"message type {header.message_type} is not taken here "
                                            "(ORM^O01, OMI^O23, ADT^A08 and ADT^A31 are)")
            if kind == ORDERS:
                worklist.apply_orders(fields.orders(message, header, self.paths), received)
            else:
                worklist.update_patient(fields.demographics(message, header, self.paths), received)
        except Rejected as rejected:
            header = rejected.header or header
            received.control_id = received.control_id or header.control_id
            received.message_type = received.message_type or header.message_type
            if problem and not rejected.reason.startswith(problem):
                rejected = Rejected("AR", hl7v2.SEGMENT_SEQUENCE_ERROR, f"{problem}; {rejected.reason}", header)
            return self._refuse(received, header, rejected)
        except UnknownOrder as error:
            return self._refuse(received, header, Rejected("AE", hl7v2.UNKNOWN_KEY, str(error)))
        except InvalidOrder as error:
            return self._refuse(received, header, Rejected("AE", hl7v2.DATA_TYPE_ERROR, str(error)))
        except DatabaseBusy:
            return self._refuse(received, header, Rejected(
                "AE", hl7v2.RECORD_LOCKED, "the database is busy with concurrent writers; send the message again"))
        except Exception as error:  # whatever happens, the sender gets an answer
            log.exception("HL7 message %s from %s failed", received.control_id, remote_address)
            return self._refuse(received, header, Rejected("AE", hl7v2.INTERNAL_ERROR, f"internal error: {error}"))
        log.info("HL7 %s %s from %s: AA", received.message_type, received.control_id, remote_address)
        return Reply(hl7v2.acknowledgement(header, "AA"), "AA")

    def lost(self, data, remote_address, problem):
        """Keep a block that ended without its end (the connection closed, a new
        message began): there is no message to answer."""
        received = worklist.Received(raw=data.decode("latin-1"), remote_address=remote_address,
                                     node=settings.NODE_NAME)
        try:
            header = hl7v2.read_header(data)
        except Rejected as rejected:
            header = rejected.header
        if header is not None:
            received.control_id, received.message_type = header.control_id, header.message_type
        log.warning("HL7 block from %s cut short (%s)", remote_address, problem)
        self._record(received, "AR", problem)

    def _refuse(self, received, header, rejected):
        log.warning("HL7 %s %s from %s: %s %s", received.message_type or "message", received.control_id,
                    received.remote_address, rejected.code, rejected.reason)
        self._record(received, rejected.code, rejected.reason)
        return Reply(hl7v2.acknowledgement(header, rejected.code, rejected.reason, rejected.error), rejected.code)

    def _record(self, received, outcome, reason):
        try:
            worklist.record_message(received, outcome, reason)
        except Exception as error:  # the answer goes out even when the record cannot be written
            log.error("HL7 message %s not recorded: %s", received.control_id, error)
