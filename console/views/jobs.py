"""Jobs of the whole cluster: live progress, filters, and their actions."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone

from cluster import jobs
from cluster.models import FINISHED, Job, JobState
from archive.roles import ADMIN
from console import search
from console.access import FRAGMENT, audit, back_to, console_view, is_htmx

WAITING = 15  # seconds a Pending job may wait before the page says so
ACTIONS = {"cancel": jobs.cancel, "pause": jobs.pause, "resume": jobs.resume, "resubmit": jobs.resubmit}
ACTIVE = (JobState.PENDING, JobState.RUNNING, JobState.PAUSED)
ARCHIVE_TYPES = ("Archive", "Media")
TYPE_WORDS = {"Archive": "ZIP archive", "Media": "DICOMDIR media", "DicomModalityStore": "Send to modality",
              "OrthancPeerStore": "Send to peer", "DicomMoveScu": "Retrieve (C-MOVE)",
              "DicomGetScu": "Retrieve (C-GET)", "ResourceModification": "Modify / anonymize"}
# The console page of a finished modification's result (its Path in the REST API).
RESULT_PAGES = {"studies": "/ui/studies/{}/", "patients": "/ui/patients/{}/", "series": "/ui/open/series/{}",
                "instances": "/ui/open/instance/{}"}


def actions_for(job):
    """The actions a job's state allows, as (action, label) pairs."""
    if job.state == JobState.RUNNING:
        if job.requested == "pause":
            return [("resume", "Resume"), ("cancel", "Cancel")]
        return [("pause", "Pause"), ("cancel", "Cancel")]
    if job.state == JobState.PENDING:
        return [("pause", "Pause"), ("cancel", "Cancel")]
    if job.state == JobState.PAUSED:
        return [("resume", "Resume"), ("cancel", "Cancel")]
    if job.state in (JobState.FAILURE, JobState.CANCELLED):
        return [("resubmit", "Retry")]
    return []


def _result_page(job):
    if job.type != "ResourceModification" or job.state != JobState.SUCCESS:
        return None
    plural, _, public_id = (job.content or {}).get("Path", "").strip("/").partition("/")
    if not public_id and (job.content or {}).get("TargetStudy"):
        plural, public_id = "studies", job.content["TargetStudy"]
    return RESULT_PAGES[plural].format(public_id) if plural in RESULT_PAGES and public_id else None


def describe(job):
    """What the pages show of a job."""
    content = job.content or {}
    target = content.get("RemoteAet") or (content.get("Peer") or [""])[0]
    resources = content.get("ParentResources") or job.params.get("resources") or []
    count = content.get("InstancesCount")
    return {
        "job": job, "id": job.id, "type": TYPE_WORDS.get(job.type, job.type), "state": job.state,
        "progress": job.progress if job.state != JobState.SUCCESS else 100,
        "finished": job.state in FINISHED, "target": target, "resources": resources, "count": count,
        "download": (f"/jobs/{job.id}/archive" if job.type in ARCHIVE_TYPES and job.state == JobState.SUCCESS
                     and job.output else None),
        "expired": job.type in ARCHIVE_TYPES and job.state == JobState.SUCCESS and not job.output,
        "size": job.output_size, "requested": job.requested, "actions": actions_for(job),
        "result": _result_page(job),
        "error": f"{job.error_description}: {job.error_details}" if job.state == JobState.FAILURE else "",
        # Queued for a while and nobody took it: no worker runs, or Redis lost it (the housekeeper re-queues).
        "waiting": job.state == JobState.PENDING and (timezone.now() - job.created_at).total_seconds() > WAITING,
    }


def progress_context(job):
    return {"item": describe(job)}


@console_view()
def job_list(request):
    rows = Job.objects.order_by("-created_at")
    filters = {}
    for field in ("state", "type", "node"):
        value = request.GET.get(field, "")
        if value:
            filters[field] = value
            rows = rows.filter(**{field: value})
    paginator = Paginator(rows, 50)
    page = paginator.get_page(request.GET.get("page"))
    items = [describe(job) for job in page.object_list]
    names = search.labels(r for item in items for r in item["resources"][:3])
    for item in items:
        item["labels"] = [(r, names.get(r)) for r in item["resources"][:3]]
    choices = {
        "state": [s for s, _ in JobState.choices],
        "type": sorted(set(jobs.TYPES) | set(Job.objects.order_by().values_list("type", flat=True).distinct())),
        "node": sorted(n for n in Job.objects.order_by().values_list("node", flat=True).distinct() if n),
    }
    active = Job.objects.filter(state__in=ACTIVE).exists()
    context = {"section": "jobs", "items": items, "page": page, "filters": filters, "choices": choices,
               "active": active, "type_words": TYPE_WORDS, "next": request.get_full_path()}
    if is_htmx(request):
        return render(request, "console/_jobs_table.html", context)
    return render(request, "console/jobs.html", context)


@console_view(kind=FRAGMENT)
def job_progress(request, job_id):
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise Http404("This job is no longer in the history.")
    return render(request, "console/_job_progress.html", progress_context(job))


@console_view(GET=None, POST=ADMIN)
def job_action(request, job_id, action):
    if action not in ACTIONS:
        raise Http404(f"There is no job action “{action}”.")
    if not Job.objects.filter(pk=job_id).exists():
        raise Http404("This job is no longer in the history.")
    try:
        ACTIONS[action](job_id)
    except jobs.NotAllowed as refused:
        messages.error(request, f"Not done: {refused}.")
    else:
        audit(request, "configure", job=job_id, requested=action)
        words = {"cancel": "Cancelling", "pause": "Pausing", "resume": "Resumed", "resubmit": "Submitted again"}
        messages.success(request, f"{words[action]}: job {job_id[:8]}.")
    return redirect(back_to(request, "/ui/jobs/"))
