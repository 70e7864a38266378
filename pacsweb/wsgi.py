import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pacsweb.settings")

django.setup(set_prefix=False)

from pacsweb.handler import Handler  # noqa: E402

application = Handler()

# Django's own receivers of every request's signals that have nothing to do here: the
# caches are in memory (closing one does nothing), no middleware sets a request's
# urlconf, and without DEBUG no query is logged. Sending each request to them cost
# ~3 % of a small read's CPU (benchmarks.ab --request study).
from django.conf import settings  # noqa: E402
from django.core.cache import close_caches  # noqa: E402
from django.core.handlers.base import reset_urlconf  # noqa: E402
from django.core.signals import request_finished, request_started  # noqa: E402
from django.db import reset_queries  # noqa: E402

if all(cache["BACKEND"].endswith(".LocMemCache") for cache in settings.CACHES.values()):
    request_finished.disconnect(close_caches)
request_finished.disconnect(reset_urlconf)
if not settings.DEBUG:
    request_started.disconnect(reset_queries)

# Each web process (a gunicorn worker imports this module) joins the node registry.
from cluster.registry import start_heartbeat  # noqa: E402

start_heartbeat("web")
