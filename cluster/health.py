"""Probes for load balancers: /healthz (the process answers) and /readyz (it can work)."""

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from archive.storage import get_storage


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
    except Exception as error:
        problems["storage"] = str(error)
    try:
        import django_rq

        django_rq.get_connection("default").ping()
    except Exception as error:
        problems["redis"] = str(error).splitlines()[0] if str(error) else type(error).__name__
    status = 503 if problems else 200
    return JsonResponse({"status": "unavailable" if problems else "ready", "node": settings.NODE_NAME,
                         "problems": problems}, status=status)
