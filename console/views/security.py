"""The audit trail (what GET /audit serves) and API tokens (what /tokens manages), for administrators."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.shortcuts import redirect, render

from archive.models import ApiToken
from archive.roles import ADMIN
from console.access import audit, console_view, newest_first
from archive import audit as trail
from archive import tokens

PAGE_SIZE = 50


@console_view(GET=ADMIN)
def audit_list(request):
    filters = {name: request.GET.get(name, "").strip() for name in trail.FILTERS}
    problems = []

    def moment(name):
        try:
            return trail.moment(request.GET.get(name) or None, name)
        except ValueError as error:
            problems.append(str(error))
            return None

    since, until = moment("since"), moment("until")
    page = newest_first(request, trail.events(filters, since, until), PAGE_SIZE)
    return render(request, "console/audit.html", {
        "section": "audit", "events": page.pop("rows"), **page, "filters": filters, "actions": trail.ACTIONS,
        "kinds": trail.ACTOR_KINDS,
        "since": request.GET.get("since", ""), "until": request.GET.get("until", ""), "problems": problems,
        "filtered": any(filters.values()) or since or until,
    })


@console_view(GET=ADMIN, POST=ADMIN)
def token_list(request):
    users = get_user_model().objects.filter(is_active=True).order_by("username")
    created = None
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        user = users.filter(username=request.POST.get("user") or request.user.username).first()
        if user is None:
            messages.error(request, "Choose an active user for the token.")
        else:
            try:
                created, row = tokens.create(user, name)
            except ValueError as error:
                messages.error(request, f"No token created: {error}.")
            else:
                audit(request, "configure", token=row.prefix, token_name=row.name, token_user=user.username)
                # The secret is shown on this answer only: it is stored nowhere.
                created = {"token": created, "name": row.name, "user": user.username, "prefix": row.prefix}
    rows = ApiToken.objects.select_related("user").order_by("revoked_at", "-created_at")
    return render(request, "console/tokens.html", {"section": "tokens", "tokens": rows, "users": users,
                                                   "created": created})


@console_view(GET=None, POST=ADMIN)
def token_revoke(request, prefix):
    if tokens.revoke(prefix):
        audit(request, "configure", token=prefix, revoked=True)
        messages.success(request, f"Token {prefix} revoked: scripts using it are refused from now on.")
    else:
        messages.info(request, f"Token {prefix} was already revoked.")
    return redirect("console:tokens")
