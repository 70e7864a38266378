import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pacsweb.settings")
application = get_wsgi_application()

# Each web process (a gunicorn worker imports this module) joins the node registry.
from cluster.registry import start_heartbeat  # noqa: E402

start_heartbeat("web")
