"""Request bodies in temporary files that vanish when closed."""

from django.conf import settings

from archive import ingest, spool as spooling


def upload_origin(request):
    """Where an upload comes from, and who the audit trail names for each instance
    it stores (the access middleware's `request.actor`)."""
    actor_kind, actor = getattr(request, "actor", ("", ""))
    return ingest.Origin.http(request.META.get("REMOTE_ADDR", ""), request.user.get_username(),
                              actor_kind=actor_kind, actor=actor, path=request.path_info)


def spool(request):
    """The request body, spooled (archive.spool); raises BodyTooLarge past
    PACS_MAX_UPLOAD_MB and BodyTooSlow when the client stalls."""
    return spooling.spool(_body_stream(request), settings.MAX_UPLOAD_BYTES)


def _body_stream(request):
    # A chunked request has no Content-Length, and Django then reads an empty
    # body; clients chunk large uploads (dicomweb-client does past 1 MB). The
    # WSGI server says when its input ends by itself (gunicorn's
    # wsgi.input_terminated), and then the body is read from it to the end.
    if "CONTENT_LENGTH" not in request.META and request.META.get("wsgi.input_terminated"):
        return request.META["wsgi.input"]
    return request
