"""Studies and patients: search, a study with its series and viewer, and its actions
(download, background ZIP / DICOMDIR, send, delete)."""

import gzip

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from archive import annotations, archives, pixels, query, resources, sends
from archive import audit as trail
from archive.deletion import UnknownResource, delete_resource
from archive.models import Instance, Level
from cluster import jobs
from archive.models import Modality, Peer
from cluster.models import Job
from archive.roles import ADMIN, VIEWER
from console import search
from console.access import FRAGMENT, JSON, audit, back_to, console_view, failure, is_htmx, page_number
from console.forms import PatientSearchForm, StudySearchForm
from console.views.jobs import progress_context


def _search(request, form_class, finder, level, default_sort, template, section, **extra):
    """A search page: the form, then one page of matches from the query engine."""
    form = form_class(request.GET or None)
    sort = request.GET.get("sort", default_sort)
    page = error = None
    if form.is_bound and not form.is_valid():
        error = "Check the search fields below."
    else:
        criteria = form.criteria() if form.is_bound else {}
        extra = {"labels": form.labels()} if form.is_bound and hasattr(form, "labels") else {}
        try:
            page = finder(criteria, sort=sort, page=page_number(request), **extra)
        except query.InvalidQuery as invalid:
            error = f"This search cannot be run: {invalid}"
        else:
            audit(request, "query", level=level, query=criteria, answers=len(page.matches))
    searched = form.is_bound and any(v for k, v in request.GET.items() if k not in ("sort", "page"))
    return render(request, template, {
        "section": section, "form": form, "page": page, "sort": sort, "error": error, "searched": searched,
        **extra,
    })


@console_view()
def study_list(request):
    admin = request.roles.admin
    return _search(request, StudySearchForm, search.studies, Level.STUDY, "-date", "console/studies.html", "studies",
                   modalities=Modality.objects.all() if admin else [], peers=Peer.objects.all() if admin else [])


@console_view()
def patient_list(request):
    return _search(request, PatientSearchForm, search.patients, Level.PATIENT, "name", "console/patients.html",
                   "patients")


@console_view()
def patient_detail(request, public_id):
    row = resources.get(Level.PATIENT, public_id)
    if row is None:
        raise Http404("This patient is not in the archive (it may have been deleted).")
    patient = resources.describe(Level.PATIENT, row)
    audit(request, "read", level=Level.PATIENT, resource=public_id)
    rows = resources.descendants(Level.PATIENT, row, Level.STUDY)
    study_rows = sorted(resources.describe_many(Level.STUDY, rows),
                        key=lambda s: s["MainDicomTags"].get("StudyDate", ""), reverse=True)
    return render(request, "console/patient.html", {
        "section": "patients", "patient": patient, "row": row, "studies": study_rows,
    })


def _study(public_id):
    row = resources.get(Level.STUDY, public_id)
    if row is None:
        raise Http404("This study is not in the archive (it may have been deleted).")
    return row


def _series_number(series):
    try:
        return int(float(series["MainDicomTags"].get("SeriesNumber") or 0))
    except ValueError:
        return 0


@console_view()
def study_detail(request, public_id):
    row = _study(public_id)
    study = resources.describe(Level.STUDY, row)
    audit(request, "read", level=Level.STUDY, resource=public_id)
    series = resources.describe_many(Level.SERIES, resources.descendants(Level.STUDY, row, Level.SERIES))
    series.sort(key=lambda s: (_series_number(s), s["MainDicomTags"].get("SeriesDescription", "")))
    for item in series:
        ids = item["Instances"]
        item["thumbnail"] = ids[len(ids) // 2] if ids else None
    instances = sum(len(s["Instances"]) for s in series)
    job = None
    if request.GET.get("job"):
        job = Job.objects.filter(pk=request.GET["job"]).first()

    return render(request, "console/study.html", {
        "section": "studies", "study": study, "row": row, "patient": row.patient, "series": series,
        "instances": instances,
        "metadata": annotations.list_metadata(Level.STUDY, public_id),
        "attachments": annotations.list_attachments(Level.STUDY, public_id),
        "priors": search.priors(row),
        "job": progress_context(job) if job else None,
        "modalities": Modality.objects.all() if request.roles.admin else [],
        "peers": Peer.objects.all() if request.roles.admin else [],
        "stable_age": settings.STABLE_AGE,
    })


@console_view(GET=ADMIN, POST=ADMIN)
def study_delete(request, public_id):
    row = _study(public_id)
    if request.method == "POST":
        tags = row.main_dicom_tags
        subject = trail.subject(Level.STUDY, public_id, counts=True)
        try:
            delete_resource(Level.STUDY, public_id)
        except UnknownResource:
            messages.info(request, "This study had already been deleted.")
            return redirect("console:studies")
        audit(request, "delete", level=Level.STUDY, resource=public_id, subject=subject)
        messages.success(request, f"Deleted the study “{tags.get('StudyDescription') or 'without description'}” "
                                  f"of {row.patient.main_dicom_tags.get('PatientName') or 'an unnamed patient'}.")
        return redirect("console:studies")
    count = Instance.objects.filter(series__study=row).count()
    series = row.series.count()
    return render(request, "console/study_delete.html", {
        "section": "studies", "row": row, "patient": row.patient, "instances": count, "series_count": series,
    })


@console_view(kind=FRAGMENT, GET=None, POST=VIEWER)
def study_prepare(request, public_id):
    """A ZIP or a DICOMDIR of the study, built by a job (viewers may create archives)."""
    _study(public_id)
    media = request.POST.get("kind") == "media"
    job = jobs.submit("Media" if media else "Archive", {"resources": [public_id]})
    audit(request, "export", level=Level.STUDY, resource=public_id, job=job.id, kind=job.type)
    return _job_started(request, public_id, job)


@console_view(kind=FRAGMENT, GET=None, POST=ADMIN)
def study_send(request, public_id):
    """Send the study to a modality (C-STORE) or a peer (HTTP), as a job with progress."""
    _study(public_id)
    target = request.POST.get("target", "")
    send = _send_to(target, [public_id])
    if send is None:
        if is_htmx(request):
            return failure(request, 400, "Not sent", "Choose where to send the study.", FRAGMENT)
        messages.error(request, "Choose where to send the study.")
        return redirect("console:study", public_id=public_id)
    job = jobs.submit(send.type, send.params, content=send.content)
    audit(request, "send", level=Level.STUDY, resource=public_id, job=job.id, target=target)
    return _job_started(request, public_id, job)


def _send_to(target, public_ids):
    """The send job of the studies to `target` ("modality:NAME" or "peer:NAME"); None
    when no target is chosen."""
    kind, _, name = target.partition(":")
    if kind == "modality":
        modality = Modality.objects.filter(name=name).first()
        if modality is None:
            raise Http404(f"The modality “{name}” is not configured (any more).")
        return sends.to_modality(modality, public_ids, "Console")
    if kind == "peer":
        peer = Peer.objects.filter(name=name).first()
        if peer is None:
            raise Http404(f"The peer “{name}” is not configured (any more).")
        return sends.to_peer(peer, public_ids, "Console")
    return None


def _selected(request):
    """The studies ticked on the list (public ids of studies still in the archive), in list order."""
    asked = list(dict.fromkeys(request.POST.getlist("study")))[:search.BULK_LIMIT]
    present = set(resources.queryset(Level.STUDY).filter(public_id__in=asked).values_list("public_id", flat=True))
    return [public_id for public_id in asked if public_id in present]


def _nothing_selected(request):
    messages.error(request, "Tick the studies first.")
    return redirect(back_to(request, reverse("console:studies")))


@console_view(GET=None, POST=VIEWER)
def bulk_download(request):
    """One ZIP of the ticked studies, streamed while it is built."""
    selected = _selected(request)
    if not selected:
        return _nothing_selected(request)
    files = archives.entries(selected)
    for public_id in selected:
        audit(request, "export", level=Level.STUDY, resource=public_id, kind="Archive", studies=len(selected))
    response = StreamingHttpResponse(archives.stream_zip(files), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{len(selected)}-studies.zip"'
    return response


@console_view(GET=None, POST=ADMIN)
def bulk_send(request):
    """One send job for the ticked studies, followed on the Jobs page."""
    selected = _selected(request)
    if not selected:
        return _nothing_selected(request)
    target = request.POST.get("target", "")
    send = _send_to(target, selected)
    if send is None:
        messages.error(request, "Choose where to send the studies.")
        return redirect(back_to(request, reverse("console:studies")))
    job = jobs.submit(send.type, send.params, content=send.content)
    for public_id in selected:
        audit(request, "send", level=Level.STUDY, resource=public_id, job=job.id, target=target)
    messages.success(request, f"Sending {len(selected)} stud{'y' if len(selected) == 1 else 'ies'} "
                              f"to {target.partition(':')[2]}: follow the job below.")
    return redirect("console:jobs")


@console_view(GET=None, POST=ADMIN)
def bulk_delete(request):
    """Ask, naming every ticked study; delete them once confirmed."""
    selected = _selected(request)
    if not selected:
        return _nothing_selected(request)
    if request.POST.get("confirm") != "yes":
        rows = search.described(selected)
        return render(request, "console/studies_delete.html", {
            "section": "studies", "rows": rows, "instances": sum(r.n_instances for r in rows),
            "next": back_to(request, reverse("console:studies")),
        })
    deleted = 0
    for public_id in selected:
        subject = trail.subject(Level.STUDY, public_id, counts=True)
        try:
            delete_resource(Level.STUDY, public_id)
        except UnknownResource:
            continue
        deleted += 1
        audit(request, "delete", level=Level.STUDY, resource=public_id, subject=subject)
    messages.success(request, f"Deleted {deleted} stud{'y' if deleted == 1 else 'ies'}.")
    return redirect(back_to(request, reverse("console:studies")))


def _job_started(request, public_id, job):
    if is_htmx(request):
        return render(request, "console/_job_progress.html", progress_context(job))
    return redirect(reverse("console:study", args=[public_id]) + f"?job={job.id}#actions")


@console_view()
def open_resource(request, level, public_id):
    """The console page of any resource named by a change: its study (or patient)."""
    levels = {"patient": Level.PATIENT, "study": Level.STUDY, "series": Level.SERIES, "instance": Level.INSTANCE}
    if level.lower() == "any":  # an id of any level (the resources of a job)
        candidates = list(levels.values())
    elif level.lower() in levels:
        candidates = [levels[level.lower()]]
    else:
        raise Http404("Unknown level.")
    row = None
    for level in candidates:
        row = resources.MODELS[level].objects.filter(public_id=public_id).first()
        if row is not None:
            break
    if row is None:
        raise Http404("This resource is no longer in the archive.")
    if level == Level.PATIENT:
        return redirect("console:patient", public_id=public_id)
    if level == Level.STUDY:
        return redirect("console:study", public_id=public_id)
    study = resources.ancestor(level, row, Level.STUDY)
    series = row if level == Level.SERIES else row.series
    return redirect(reverse("console:study", args=[study.public_id]) + f"?series={series.public_id}#viewer")


@console_view(kind=JSON)
def instance_tags(request, public_id):
    """The tags panel's data: every element with its tag number, VR, name and value,
    sequences as nested items (annotations.tag_tree)."""
    try:
        tree = annotations.tag_tree(public_id)
    except (annotations.UnknownResource, annotations.UnknownItem):
        raise Http404("This instance is not in the archive (it may have been deleted).")
    audit(request, "read", level=Level.INSTANCE, resource=public_id)
    return JsonResponse({"elements": tree})


# A stored file never changes (its DICOM attachment cannot be replaced): a frame's pixels
# may be kept by the browser, for this user only.
FRAME_CACHE = "private, max-age=86400"


@console_view(kind=JSON)
def frame_pixels(request, public_id, frame):
    """One frame's values and drawing attributes for the viewer (archive.pixels), fetched
    once per frame: windowing, zoom and measurement happen in the browser."""
    try:
        key = pixels.storage_key(public_id)
    except (annotations.UnknownResource, annotations.UnknownItem):
        raise Http404("This instance is not in the archive (it may have been deleted).")
    etag = f'"{key}-{frame}"'
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        response = HttpResponse(status=304)
    else:
        try:
            message = pixels.frame_message(key, frame)
        except pixels.NoSuchFrame as error:
            raise Http404(str(error))
        except pixels.RenderError as error:
            return JsonResponse({"error": f"This image cannot be shown: {error}"}, status=415)
        audit(request, "read", level=Level.INSTANCE, resource=public_id)
        response = HttpResponse(message, content_type="application/octet-stream")
        if "gzip" in request.headers.get("Accept-Encoding", "") and len(message) > 4096:
            # Stored values compress about twice; level 1 costs little time.
            response.content = gzip.compress(message, compresslevel=1)
            response["Content-Encoding"] = "gzip"
    response["ETag"] = etag
    response["Cache-Control"] = FRAME_CACHE
    response["Vary"] = "Accept-Encoding"
    return response
