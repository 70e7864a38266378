"""Probes for load balancers: /healthz (the process answers) and /readyz (it can work)."""

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from archive import space
from archive.storage import get_storage
from cluster import registry


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok", "node": settings.NODE_NAME})


@require_GET
def readyz(request):
    """Database, storage and Redis reachable; 503 naming what is not."""
    problems = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        problems["database"] = str(error).splitlines()[0] if str(error) else type(error).__name__
    try:
        if not get_storage().root.is_dir():
            problems["storage"] = f"{get_storage().root} is not a directory"
        elif reason := space.shortage():
            problems["storage"] = reason
    except Exception as error:
        problems["storage"] = str(error)
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()
    except Exception as error:
        problems["redis"] = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "database" not in problems and registry.is_draining():
        # The load balancer stops sending new work; what runs here finishes.
        problems["draining"] = f"node {settings.NODE_NAME} is draining (manage.py undrain ends it)"
    status = 503 if problems else 200
    return JsonResponse({"status": "unavailable" if problems else "ready", "node": settings.NODE_NAME,
                         "problems": problems}, status=status)
