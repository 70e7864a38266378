"""Request bodies in temporary files that vanish when closed."""

import gzip
import zlib

from django.conf import settings

from archive import ingest, spool as spooling
from archive.errors import BadEncoding, UnsupportedEncoding
from archive.roles import remembered_credentials


def upload_origin(request):
    """Where an upload comes from, who the audit trail names for each instance it
    stores (the access middleware's `request.actor`), and the credentials its
    stores check again (`request.credentials_to_confirm`, pacsweb/access.py)."""
    actor_kind, actor = getattr(request, "actor", ("", ""))
    return ingest.Origin.http(request.META.get("REMOTE_ADDR", ""), request.user.get_username(),
                              actor_kind=actor_kind, actor=actor, path=request.path_info,
                              credentials=remembered_credentials(request))


def spool(request):
    """The request body, spooled (archive.spool) and decoded from its
    Content-Encoding (gzip or deflate, as Orthanc accepts); raises BodyTooLarge
    past PACS_MAX_UPLOAD_MB (of decoded bytes too: a small gzip can inflate to
    terabytes), BodyTooSlow when the client stalls, UnsupportedEncoding and
    BadEncoding."""
    codings = [c.strip().lower() for c in request.headers.get("Content-Encoding", "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return spooling.spool(_body_stream(request), settings.MAX_UPLOAD_BYTES)
    if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
        raise UnsupportedEncoding(f"Content-Encoding {request.headers['Content-Encoding']!r} is not supported: "
                                  "send the body as is, or gzip or deflate encoded")
    return _decoded(spooling.spool(_body_stream(request), settings.MAX_UPLOAD_BYTES), codings[0])


def _decoded(encoded, coding):
    with encoded:
        reader = gzip.GzipFile(fileobj=encoded, mode="rb") if coding != "deflate" else _Inflater(encoded)
        return spooling.spool(_Decoding(reader, coding), settings.MAX_UPLOAD_BYTES)


class _Decoding:
    """A decoder whose failures say which encoding was broken."""

    def __init__(self, reader, coding):
        self._reader = reader
        self._coding = coding

    def read(self, size):
        try:
            return self._reader.read(size)
        except (OSError, EOFError, zlib.error) as error:
            raise BadEncoding(f"the body is not valid {self._coding} data: {error}") from error


class _Inflater:
    """Content-Encoding: deflate is the zlib format (RFC 9110 §8.4.1.2); never
    more than `size` bytes inflated at once."""

    def __init__(self, stream):
        self._stream = stream
        self._inflater = zlib.decompressobj()

    def read(self, size):
        while True:
            pending = self._inflater.unconsumed_tail or self._stream.read(size)
            if not pending:
                return self._inflater.flush()
            data = self._inflater.decompress(pending, size)
            if data:
                return data


def _body_stream(request):
    # A chunked request has no Content-Length, and Django then reads an empty
    # body; clients chunk large uploads (dicomweb-client does past 1 MB). The
    # WSGI server says when its input ends by itself (gunicorn's
    # wsgi.input_terminated), and then the body is read from it to the end.
    if "CONTENT_LENGTH" not in request.META and request.META.get("wsgi.input_terminated"):
        return request.META["wsgi.input"]
    return request
