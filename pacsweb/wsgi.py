import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pacsweb.settings")

django.setup(set_prefix=False)

from pacsweb.handler import Handler, drop_idle_receivers  # noqa: E402

application = Handler()

drop_idle_receivers()

# Each web process (a gunicorn worker imports this module) joins the node registry.
from cluster.registry import start_heartbeat  # noqa: E402

start_heartbeat("web")
