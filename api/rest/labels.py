"""Orthanc 1.12's label routes: the labels of a resource, one label, every label in use."""

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from archive import labels, resources
from api.rest.errors import error_response, rest_view


def label_view(view):
    @rest_view
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except labels.UnknownResource as error:
            return error_response(request, 404, f"resource {error} is not in the archive", orthanc=(17, "Unknown resource"))
        except labels.InvalidLabel as error:
            return error_response(request, 400, str(error), orthanc=(3, "Parameter out of range"))

    return csrf_exempt(wrapper)


@require_http_methods(["GET"])
@label_view
def label_list(request, plural, public_id):
    return JsonResponse(labels.labels_of(resources.LEVEL_OF_PLURAL[plural], public_id), safe=False)


@require_http_methods(["GET", "PUT", "DELETE"])
@label_view
def label_item(request, plural, public_id, name):
    level = resources.LEVEL_OF_PLURAL[plural]
    if request.method == "PUT":
        labels.add_label(level, public_id, name)
    elif request.method == "DELETE":
        labels.remove_label(level, public_id, name)
    elif not labels.has_label(level, public_id, name):
        return error_response(request, 404, f"{plural} {public_id} has no label {name}", orthanc=(17, "Unknown resource"))
    # Orthanc answers each of the three with an empty body.
    return HttpResponse(b"", content_type="text/plain")


@require_http_methods(["GET"])
@rest_view
def all_labels(request):
    return JsonResponse(labels.all_labels(), safe=False)
