from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from archive.rest import instances, system
from cluster import health

urlpatterns = [
    # The console arrives at /ui/; until then the browser's entry is the admin.
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("system", system.system),
    path("statistics", system.statistics),
    path("instances", instances.upload),
    path("instances/<str:public_id>/file", instances.file),
]
