"""The home page: what the archive holds, what it received lately, how the cluster is."""

import datetime

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve
from django.utils import timezone

from archive.models import Attachment, Instance, Patient, Series, Study
from cluster.models import Job, JobState
from archive.roles import VIEWER
from console import search
from console.access import console_view, failure
from console.views.cluster import overview

CHART_DAYS = 30
CHART_WIDTH, CHART_HEIGHT = 600, 140


@console_view()
def home(request):
    storage = Attachment.objects.aggregate(total=Sum("size"))["total"] or 0
    counts = {
        "patients": Patient.objects.count(),
        "studies": Study.objects.count(),
        "series": Series.objects.count(),
        "instances": Instance.objects.count(),
    }
    recent = search.studies({}, sort="-received", size=8)
    active_jobs = Job.objects.filter(state__in=(JobState.PENDING, JobState.RUNNING, JobState.PAUSED)).count()
    return render(request, "console/home.html", {
        "section": "home", "counts": counts, "storage": storage, "chart": received_chart(),
        "recent": recent.matches, "cluster": overview(), "active_jobs": active_jobs,
    })


def received_chart(days=CHART_DAYS):
    """Bars of the studies received per day over the last `days` days (inline SVG geometry)."""
    today = timezone.localdate()
    first = today - datetime.timedelta(days=days - 1)
    start = timezone.make_aware(datetime.datetime.combine(first, datetime.time.min))
    per_day = dict(
        Study.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .values_list("day").annotate(n=Count("pk")).values_list("day", "n")
    )
    peak = max(per_day.values(), default=0)
    top = max(peak, 1)
    slot = CHART_WIDTH / days
    plot = CHART_HEIGHT - 20  # room for the date labels
    bars = []
    for index in range(days):
        day = first + datetime.timedelta(days=index)
        count = per_day.get(day, 0)
        height = 0 if count == 0 else max(2.0, plot * count / top)
        bars.append({
            "day": day, "count": count, "x": round(index * slot + 1, 1), "width": round(slot - 2, 1),
            "y": round(plot - height, 1), "height": round(height, 1), "today": day == today,
        })
    labels = [{"x": x, "anchor": anchor, "text": (first + datetime.timedelta(days=i)).strftime("%b %-d")}
              for i, x, anchor in ((0, 0, "start"), (days // 2, round((days // 2) * slot + slot / 2, 1), "middle"),
                                   (days - 1, CHART_WIDTH, "end"))]
    return {"bars": bars, "peak": peak, "total": sum(per_day.values()), "width": CHART_WIDTH,
            "height": CHART_HEIGHT, "plot": plot, "labels": labels, "days": days}


@console_view(GET=VIEWER, POST=VIEWER)
def not_found(request):
    """Any other address under /ui/: the same address with a slash, or a clear 404."""
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.url_name not in (None, "not-found"):
            query = request.META.get("QUERY_STRING", "")
            return redirect(request.path + "/" + (f"?{query}" if query else ""))
    return failure(request, 404, "Not found", "There is no page at this address.")
