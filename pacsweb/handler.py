from django.core.handlers.wsgi import WSGIHandler


class Handler(WSGIHandler):
    """Django's handler, taking the route the access middleware already resolved (to
    learn the role it needs) instead of resolving the path a second time."""

    def resolve_request(self, request):
        match = request.resolver_match
        if match is not None and not hasattr(request, "urlconf"):
            return match
        return super().resolve_request(request)
