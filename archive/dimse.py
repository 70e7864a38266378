"""What the listener and the SCU share of DIMSE: status codes, status datasets,
and sockets that do not wait for Nagle's algorithm."""

import socket

from pydicom.dataset import Dataset
from pynetdicom.transport import AssociationSocket

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
NOT_AUTHORIZED = 0x0124  # PS3.7 C.5.x, valid for every DIMSE service
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
IDENTIFIER_DOES_NOT_MATCH = 0xA900
MOVE_DESTINATION_UNKNOWN = 0xA801
UNABLE_TO_PROCESS = 0xC001


def status(code, comment):
    """A status dataset with its comment (PS3.7 C.4: at most 64 characters)."""
    answer = Dataset()
    answer.Status = code
    answer.ErrorComment = comment[:64]
    return answer


_create_socket = AssociationSocket._create_socket


def _create_nodelay_socket(self, address):
    # pynetdicom leaves Nagle's algorithm on for the associations we open (C-MOVE
    # sub-operations, sends): small PDUs would wait ~40 ms for the peer's ACK.
    sock = _create_socket(self, address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


AssociationSocket._create_socket = _create_nodelay_socket
