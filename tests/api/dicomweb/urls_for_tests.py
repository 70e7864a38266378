"""The project's routes plus DICOMweb's, for tests that run before pacsweb/urls.py routes them."""

from django.urls import include, path

from api.dicomweb.wado import wado_uri
from pacsweb.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    *project_urlpatterns,
    path("dicom-web/", include("api.dicomweb.urls")),
    path("wado", wado_uri),
]
