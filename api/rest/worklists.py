"""/worklists: the modality worklist over REST, items in the DICOM JSON model (PS3.18 F.2).

    GET    /worklists        the scheduled items; ?all adds cancelled, completed and
                             discontinued ones; DICOM keywords in the query string match
                             as in a Modality Worklist C-FIND (?ScheduledStationAETitle=CT1
                             &ScheduledProcedureStepStartDate=20250101-); ?limit= &offset=
    POST   /worklists        a new item from a DICOM JSON dataset → {"ID", "Path"}
    GET    /worklists/{id}   one item
    DELETE /worklists/{id}   cancel it: modalities no longer find it

Each item is {"ID", "Path", "Status", "Dataset"}, "Dataset" being what a modality
gets for it. Reading is a viewer's, writing an admin's (the default of archive.roles).
"""

import json

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from pydicom.dataset import Dataset

from archive import worklist
from api.rest.errors import error_response, rest_view

PAGING = ("limit", "offset", "all")


def describe(item):
    return {"ID": str(item.pk), "Path": f"/worklists/{item.pk}", "Status": item.status,
            "Dataset": worklist.dataset(item).to_json_dict()}


@csrf_exempt
@require_http_methods(["GET", "POST"])
@rest_view
def worklist_list(request):
    if request.method == "POST":
        return _create(request)
    criteria = {key: value for key, value in request.GET.items() if key not in PAGING}
    unknown = sorted(set(criteria) - set(worklist.MATCHING))
    if unknown:
        return error_response(request, 400, f"unknown matching key(s) {', '.join(unknown)}; "
                                            f"the keys are {', '.join(worklist.MATCHING)}")
    try:
        limit = int(request.GET.get("limit", 100))
        offset = int(request.GET.get("offset", 0))
    except ValueError:
        return error_response(request, 400, "limit and offset are whole numbers")
    if not 1 <= limit <= 1000 or offset < 0:
        return error_response(request, 400, "limit is 1 to 1000 and offset at least 0")
    items, _ = worklist.find(criteria, limit=limit, offset=offset, finished="all" in request.GET)
    return JsonResponse([describe(item) for item in items], safe=False)


def _create(request):
    try:
        body = json.loads(request.body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return error_response(request, 400, f"the body is not valid JSON: {error}")
    if not isinstance(body, dict):
        return error_response(request, 400, "expected a dataset in the DICOM JSON model (PS3.18 F.2)")
    try:
        dataset = Dataset.from_json(body)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return error_response(request, 400, f"the body is not a DICOM JSON dataset: {error}")
    item = worklist.create(worklist.order_from_dataset(dataset))
    return JsonResponse({"ID": str(item.pk), "Path": f"/worklists/{item.pk}"})


@csrf_exempt
@require_http_methods(["GET", "DELETE"])
@rest_view
def worklist_item(request, item_id):
    if request.method == "DELETE":
        item = worklist.cancel(item_id)
        if item is None:
            return _unknown(request, item_id)
        return JsonResponse({})
    item = worklist.get(item_id)
    if item is None:
        return _unknown(request, item_id)
    return JsonResponse(describe(item))


def _unknown(request, item_id):
    return error_response(request, 404, f"no worklist item {item_id}", orthanc=(7, "Inexistent item"))
