"""GET /audit (the trail, filterable), /tokens (API tokens), /metrics."""

import json

from django.contrib.auth import get_user_model
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from archive.roles import ADMIN, allow
from api.rest.errors import error_response, rest_view
from archive.models import ApiToken
from archive import audit, tokens
from cluster import metrics


@allow(GET=ADMIN)
@csrf_exempt
@require_http_methods(["GET"])
@rest_view
def audit_list(request):
    """The trail, newest first: ?actor= &action= &resource= &level= &kind= &node= &since= &until= &limit= &offset="""
    unknown = set(request.GET) - set(audit.FILTERS) - {"since", "until", "limit", "offset"}
    if unknown:
        return error_response(request, 400, f"unknown parameter(s): {', '.join(sorted(unknown))}")
    try:
        since, until = (audit.moment(request.GET.get(name), name) for name in ("since", "until"))
        limit = int(request.GET.get("limit", 100))
        offset = int(request.GET.get("offset", 0))
    except ValueError as error:
        return error_response(request, 400, str(error))
    if not 1 <= limit <= 1000 or offset < 0:
        return error_response(request, 400, "limit is 1 to 1000 and offset at least 0")
    rows = audit.events(request.GET, since, until)
    return JsonResponse([{
        "Time": event.at.isoformat(), "ActorKind": event.actor_kind, "Actor": event.actor, "Address": event.address,
        "Action": event.action, "Method": event.method, "Path": event.path, "Status": event.status,
        "Level": event.level, "Resource": event.resource, "Details": event.details, "Node": event.node,
    } for event in rows[offset:offset + limit]], safe=False)


@allow(GET=ADMIN)
@csrf_exempt
@require_http_methods(["GET", "POST"])
@rest_view
def token_list(request):
    if request.method == "GET":
        return JsonResponse([tokens.describe(row) for row in ApiToken.objects.select_related("user")
                             .order_by("created_at")], safe=False)
    try:
        body = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return error_response(request, 400, f"the body is not valid JSON: {error}")
    if not isinstance(body, dict) or not isinstance(body.get("Name"), str):
        return error_response(request, 400, 'expected {"Name": "...", "User": "..."} (User defaults to you)')
    username = body.get("User", request.user.username)
    user = get_user_model().objects.filter(username=username).first() if isinstance(username, str) else None
    if user is None:
        return error_response(request, 400, f"no user named {username!r}")
    try:
        token, row = tokens.create(user, body["Name"])
    except ValueError as error:
        return error_response(request, 400, str(error))
    # The only time the secret is shown.
    return JsonResponse(dict(tokens.describe(row), Token=token))


@allow(GET=ADMIN)
@csrf_exempt
@require_http_methods(["DELETE"])
@rest_view
def token_detail(request, prefix):
    if not tokens.revoke(prefix):
        return error_response(request, 404, f"no active token with prefix {prefix!r}", orthanc=(7, "Inexistent item"))
    return JsonResponse({})


@require_http_methods(["GET"])
def metrics_view(request):
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")
