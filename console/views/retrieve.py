"""Query/Retrieve: search another PACS or modality at study level, see what is already
here, and retrieve one or many studies as one job (C-GET or C-MOVE) with its progress."""

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse

from archive.models import Level, Modality
from archive.roles import UPLOADER
from cluster import jobs
from cluster.models import Job
from cluster.tasks import modality_peer
from console.access import audit, console_view
from console.forms import RETRIEVE_METHODS, RemoteSearchForm
from console.views.jobs import progress_context

MAX_RETRIEVED = 200  # studies one retrieve job takes


@console_view(GET=UPLOADER)
def query_page(request):
    """The search form, the remote answers (when searched) and a running retrieve's progress."""
    from archive import remote, scu  # noqa: PLC0415 (pynetdicom only where a page talks DICOM)

    form = RemoteSearchForm(request.GET if "source" in request.GET else None)
    answers = error = None
    modality = None
    if form.is_bound and form.is_valid():
        modality = Modality.objects.filter(name=form.cleaned_data["source"]).first()
        if modality is None:  # deleted since the form was drawn
            error = "This PACS is not configured any more: choose another."
    if modality is not None:
        criteria = form.criteria()
        try:
            answers = remote.find_studies(modality_peer(modality), criteria)
        except scu.DicomNetworkError as failure:
            error = f"{modality.name} did not answer the search: {failure}"
        audit(request, "query", level=Level.STUDY, modality=modality.name, query=criteria,
              answers=len(answers or []), status=200 if error is None else 502)
    job = Job.objects.filter(pk=request.GET.get("job", "")).first() if request.GET.get("job") else None
    params = request.GET.copy()
    params.pop("job", None)
    here = "/ui/retrieve/" + (f"?{params.urlencode()}" if params else "")
    return render(request, "console/retrieve.html", {
        "section": "retrieve", "form": form, "answers": answers, "error": error,
        "methods": RETRIEVE_METHODS, "has_modalities": Modality.objects.exists(),
        "job": progress_context(job) if job else None, "next": here, "ae_title": settings.AE_TITLE, "here_count": sum(1 for a in answers or [] if a["here"]),
    })


@console_view(GET=None, POST=UPLOADER)
def retrieve(request):
    """One job retrieving the ticked studies from the modality they were found at."""
    modality = Modality.objects.filter(name=request.POST.get("source", "")).first()
    if modality is None:
        raise Http404("This modality is not configured (any more).")
    uids = list(dict.fromkeys(u for u in request.POST.getlist("study") if u))[:MAX_RETRIEVED]
    back = request.POST.get("next", "")
    back = back if back.startswith("/ui/retrieve/") else reverse("console:retrieve")
    if not uids:
        messages.error(request, "Tick the studies to retrieve first.")
        return redirect(back)
    method = request.POST.get("method", "C-GET")
    if method not in dict(RETRIEVE_METHODS):
        method = "C-GET"
    target = settings.AE_TITLE
    identifiers = [{"StudyInstanceUID": uid} for uid in uids]
    content = {"Description": "Console", "LocalAet": modality.local_aet or settings.AE_TITLE,
               "Query": identifiers, "RemoteAet": modality.aet, "TargetAet": target, "RetrieveMethod": method}
    params = {"modality": modality.name, "level": Level.STUDY, "identifiers": identifiers, "target": target}
    job = jobs.submit("DicomMoveScu" if method == "C-MOVE" else "DicomGetScu", params, content=content)
    audit(request, "retrieve", level=Level.STUDY, modality=modality.name, studies=uids, job=job.id, method=method)
    separator = "&" if "?" in back else "?"
    return redirect(f"{back}{separator}job={job.id}#retrieve-job")
