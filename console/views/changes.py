"""The change log (what GET /changes serves), newest first, filterable and paged."""

from django.shortcuts import render

from archive.models import Change, ChangeType, Level
from console import search
from console.access import console_view, newest_first

PAGE_SIZE = 50


@console_view()
def change_list(request):
    rows = Change.objects.order_by("-seq")
    change_type = request.GET.get("type", "")
    level = request.GET.get("level", "")
    if change_type in ChangeType.values:
        rows = rows.filter(change_type=change_type)
    if level in Level.values:
        rows = rows.filter(level=level)
    page = newest_first(request, rows, PAGE_SIZE)
    changes = page.pop("rows")
    return render(request, "console/changes.html", {
        "section": "changes", "changes": changes, "labels": search.labels(c.public_id for c in changes), **page, "types": ChangeType.values, "levels": Level.values,
        "selected_type": change_type, "selected_level": level,
    })
