import os

import django
from django.core.handlers.wsgi import WSGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pacsweb.settings")


class Handler(WSGIHandler):
    """Django's handler, taking the route the access middleware already resolved (to
    learn the role it needs) instead of resolving the path a second time."""

    def resolve_request(self, request):
        match = request.resolver_match
        if match is not None and not hasattr(request, "urlconf"):
            return match
        return super().resolve_request(request)


django.setup(set_prefix=False)
application = Handler()

# Each web process (a gunicorn worker imports this module) joins the node registry.
from cluster.registry import start_heartbeat  # noqa: E402

start_heartbeat("web")
