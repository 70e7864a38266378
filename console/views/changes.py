"""The change log (what GET /changes serves), newest first, filterable and paged."""

from django.shortcuts import render

from archive.models import Change, ChangeType, Level
from console.access import console_view

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
    # Counting every change of a busy archive is costly; the pager only needs to
    # know whether a next page exists, so it fetches one row more than it shows.
    try:
        number = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        number = 1
    offset = (number - 1) * PAGE_SIZE
    found = list(rows[offset:offset + PAGE_SIZE + 1])
    return render(request, "console/changes.html", {
        "section": "changes", "changes": found[:PAGE_SIZE], "has_next": len(found) > PAGE_SIZE,
        "page_number": number, "has_previous": number > 1, "types": ChangeType.values, "levels": Level.values,
        "selected_type": change_type, "selected_level": level,
    })
