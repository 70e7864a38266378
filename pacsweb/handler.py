from django.core.handlers.wsgi import WSGIHandler


class Handler(WSGIHandler):
    """Django's handler, taking the route the access middleware already resolved (to
    learn the role it needs) instead of resolving the path a second time."""

    def resolve_request(self, request):
        match = request.resolver_match
        if match is not None and not hasattr(request, "urlconf"):
            return match
        return super().resolve_request(request)


def drop_idle_receivers():
    """Disconnect Django's own receivers of every request's signals that have nothing
    to do here: the caches are in memory (closing one does nothing), no middleware sets
    a request's urlconf, and without DEBUG no query is logged. Sending each request to
    them cost ~3 % of a small read's CPU (benchmarks.ab --request study)."""
    from django.conf import settings
    from django.core.cache import close_caches
    from django.core.handlers.base import reset_urlconf
    from django.core.signals import request_finished, request_started
    from django.db import reset_queries

    if all(cache["BACKEND"].endswith(".LocMemCache") for cache in settings.CACHES.values()):
        request_finished.disconnect(close_caches)
    request_finished.disconnect(reset_urlconf)
    if not settings.DEBUG:
        request_started.disconnect(reset_queries)
