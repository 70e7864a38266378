"""Routes under /dicom-web/ (the path Orthanc's DICOMweb plugin uses), PS3.18 §10.

Included with `path("dicom-web/", include("api.dicomweb.urls"))`; WADO-URI
(`wado.wado_uri`) is routed at /wado by the project's URLconf.
"""

from django.http import HttpResponseNotAllowed
from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt

from api.dicomweb import qido, stow, wado
from archive.roles import required

app_name = "dicomweb"

UID = r"[0-9]+(?:\.[0-9]+)*"
STUDY = rf"studies/(?P<study>{UID})"
SERIES = rf"{STUDY}/series/(?P<series>{UID})"
INSTANCE = rf"{SERIES}/instances/(?P<instance>{UID})"
FRAMES = rf"{INSTANCE}/frames/(?P<frame_list>[0-9,]+)"


def by_method(**views):
    """One route, a view per HTTP method: /studies searches (GET) and stores (POST)."""

    @csrf_exempt
    def dispatch(request, *args, **kwargs):
        view = views.get(request.method.lower())
        if view is None:
            return HttpResponseNotAllowed([method.upper() for method in views])
        return view(request, *args, **kwargs)

    # The route's roles are its views' (pacsweb/access.py reads them on the view the
    # route names): without them a store here needed the admin's role, not the uploader's.
    dispatch.roles = {method.upper(): required(view, method.upper()) for method, view in views.items()}
    dispatch.checks_credentials = frozenset(
        method.upper() for method, view in views.items()
        if method.upper() in getattr(view, "checks_credentials", ()))
    return dispatch


urlpatterns = [
    re_path(r"^studies$", by_method(get=qido.search_studies, post=stow.store), name="studies"),
    re_path(rf"^{STUDY}$", by_method(get=wado.retrieve, post=stow.store)),
    re_path(rf"^{STUDY}/metadata$", wado.metadata),
    re_path(rf"^{STUDY}/rendered$", wado.rendered),
    re_path(rf"^{STUDY}/thumbnail$", wado.thumbnail),
    re_path(rf"^{STUDY}/series$", qido.search_series),
    re_path(rf"^{STUDY}/instances$", qido.search_instances),
    re_path(rf"^{SERIES}$", wado.retrieve),
    re_path(rf"^{SERIES}/metadata$", wado.metadata),
    re_path(rf"^{SERIES}/rendered$", wado.rendered),
    re_path(rf"^{SERIES}/thumbnail$", wado.thumbnail),
    re_path(rf"^{SERIES}/instances$", qido.search_instances),
    re_path(rf"^{INSTANCE}$", wado.retrieve),
    re_path(rf"^{INSTANCE}/metadata$", wado.metadata),
    re_path(rf"^{INSTANCE}/rendered$", wado.rendered),
    re_path(rf"^{INSTANCE}/thumbnail$", wado.thumbnail),
    re_path(rf"^{INSTANCE}/bulk/(?P<tag>[0-9A-Fa-f]{{8}})$", wado.bulk),
    re_path(rf"^{FRAMES}$", wado.frames),
    re_path(rf"^{FRAMES}/rendered$", wado.rendered),
    re_path(rf"^{FRAMES}/thumbnail$", wado.thumbnail),
    re_path(r"^series$", qido.search_series),
    re_path(r"^instances$", qido.search_instances),
]
