"""Inputs (request bodies, ZIP members) in temporary files that vanish when closed."""

import io
import tempfile
import time

from django.conf import settings

from archive.errors import ArchiveError, BodyTooLarge, BodyTooSlow, RejectedInstance
from archive.storage import CHUNK

SPOOL_IN_MEMORY = 8 * 1024 * 1024
# Seconds of a body before its average rate is held to PACS_MIN_UPLOAD_RATE_KB.
UPLOAD_RATE_GRACE = 10
# What a read raises when the client stayed silent past the socket's timeout.
SILENT = (BlockingIOError, TimeoutError)


def spool(stream, limit=None):
    """What `stream` (anything with read()) gives, in a temporary file that vanishes
    when closed (or on a crash: it is unlinked from the start), held in memory while
    small. With a `limit` in bytes, raises BodyTooLarge past it, and BodyTooSlow
    when the source stays silent past its socket's timeout."""
    return spool_stream(_Capped(stream, limit) if limit is not None else stream)


class _Capped:
    """A body reader that refuses to go past the upload limit, whatever Content-Length said."""

    def __init__(self, stream, limit):
        self._stream = stream
        self._left = limit
        self._read = 0
        self._started = time.monotonic()

    def read(self, size):
        try:
            chunk = self._stream.read(size)
        except OSError as error:
            # The listening socket's receive timeout (deploy/gunicorn.conf.py) ran out;
            # Django reports it as an UnreadablePostError caused by it.
            if not isinstance(error, SILENT) and not isinstance(error.__cause__, SILENT):
                # The client closed mid-body, or sent a broken chunked encoding: its
                # input, not our failure (it was a 500).
                raise RejectedInstance(f"the request body was cut short or malformed: {error or type(error).__name__}") \
                    from error
            raise BodyTooSlow(f"the client sent nothing for {settings.CLIENT_TIMEOUT} s "
                              "(PACS_CLIENT_TIMEOUT) in the middle of its body") from error
        except ArchiveError:
            raise  # a reader that already said what is wrong (a broken Content-Encoding)
        except Exception as error:  # the WSGI server's parse errors (a broken chunk size): the client's input
            raise RejectedInstance(f"the request body is malformed: {type(error).__name__}: {error}") from error
        self._left -= len(chunk)
        self._read += len(chunk)
        # A client may pause (PACS_CLIENT_TIMEOUT) but not trickle for ever: past a
        # grace period, the body must arrive at PACS_MIN_UPLOAD_RATE_KB on average.
        elapsed = time.monotonic() - self._started
        if chunk and elapsed > UPLOAD_RATE_GRACE and self._read < settings.MIN_UPLOAD_RATE * elapsed:
            raise BodyTooSlow(f"the body arrives at {self._read / elapsed / 1024:.1f} KB/s, slower than "
                              f"PACS_MIN_UPLOAD_RATE_KB ({settings.MIN_UPLOAD_RATE // 1024} KB/s)")
        if self._left < 0:
            raise BodyTooLarge(f"the body is larger than PACS_MAX_UPLOAD_MB ({settings.MAX_UPLOAD_BYTES // 2**20} MB)")
        return chunk


def spool_stream(stream):
    first = stream.read(CHUNK)
    second = stream.read(CHUNK) if first else b""
    if not second:
        # A body that came in one read is read from the bytes it came in: copied into
        # the spool and out of it again, a 0.5 MB store cost 3-5 % more CPU.
        return io.BytesIO(first)
    target = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=settings.FILE_UPLOAD_TEMP_DIR)
    target.write(first)
    target.write(second)
    while chunk := stream.read(CHUNK):
        target.write(chunk)
    target.seek(0)
    return target
