"""GET /cluster/nodes and draining, from any node."""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from api.rest.errors import error_response, rest_view
from cluster import registry
from cluster.models import NodeProcess, NodeState


@csrf_exempt
@require_http_methods(["GET"])
@rest_view
def node_list(request):
    return JsonResponse(registry.nodes(), safe=False)


@csrf_exempt
@require_http_methods(["POST"])
@rest_view
def node_drain(request, name, draining):
    known = NodeProcess.objects.filter(node=name).exists() or NodeState.objects.filter(node=name).exists()
    if not known:
        return error_response(request, 404, f"no node named {name!r} has joined the cluster",
                              orthanc=(7, "Inexistent item"))
    registry.set_draining(name, draining)
    return JsonResponse({"Name": name, "Draining": draining})
