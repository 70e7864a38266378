"""Editing a study from the console: its labels, and the modify and anonymize dialogs
(what changes is shown before it runs; it runs as a ResourceModification job whose
progress the study page shows, with a link to the result)."""

import io

import pydicom
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render

from archive import confidentiality, editing, labels, resources
from archive.models import Instance, Level, Study
from archive.roles import ADMIN
from cluster import modification
from console.access import audit, console_view

# The fields the modify dialog offers: (keyword, label).
MODIFIABLE = [("PatientName", "Patient name"), ("PatientID", "Patient ID"), ("PatientBirthDate", "Birth date"),
              ("PatientSex", "Sex"), ("StudyDescription", "Study description"), ("AccessionNumber", "Accession number"),
              ("StudyDate", "Study date"), ("ReferringPhysicianName", "Referring physician"),
              ("InstitutionName", "Institution")]


def _study(public_id):
    row = resources.get(Level.STUDY, public_id)
    if row is None:
        raise Http404("This study is not in the archive (it may have been deleted).")
    return row


@console_view(GET=None, POST=ADMIN)
def study_labels(request, public_id):
    """Add (name) or remove (remove=name) a label, then back to the study."""
    _study(public_id)
    name = (request.POST.get("name") or request.POST.get("remove") or "").strip()
    try:
        if request.POST.get("remove"):
            labels.remove_label(Level.STUDY, public_id, name)
        else:
            labels.add_label(Level.STUDY, public_id, name)
    except labels.InvalidLabel:
        messages.error(request, f"“{name}” is not a label: use 1 to 64 letters, digits, “_” or “-”.")
    else:
        audit(request, "annotate", level=Level.STUDY, resource=public_id, label=name,
              removed=bool(request.POST.get("remove")))
    return redirect(f"/ui/studies/{public_id}/#labels")


# The fields the patient dialogs offer: the patient's attributes only.
PATIENT_FIELDS = MODIFIABLE[:4]


class Target:
    """The study or patient a dialog edits: its row, its patient, its page, its instances."""

    def __init__(self, level, public_id):
        row = resources.get(level, public_id)
        if row is None:
            raise Http404(f"This {level.lower()} is not in the archive (it may have been deleted).")
        self.level, self.row, self.public_id = level, row, public_id
        self.patient = row.patient if level == Level.STUDY else row
        self.page = f"/ui/{'studies' if level == Level.STUDY else 'patients'}/{public_id}/"
        where = "series__study" if level == Level.STUDY else "series__study__patient"
        self.instances = Instance.objects.filter(**{where: row})
        self.fields = MODIFIABLE if level == Level.STUDY else PATIENT_FIELDS
        self.current = {**self.patient.main_dicom_tags, **(row.main_dicom_tags if level == Level.STUDY else {})}


@console_view(GET=ADMIN, POST=ADMIN)
def study_modify(request, public_id):
    return _modify(request, Target(Level.STUDY, public_id))


@console_view(GET=ADMIN, POST=ADMIN)
def patient_modify(request, public_id):
    return _modify(request, Target(Level.PATIENT, public_id))


@console_view(GET=ADMIN, POST=ADMIN)
def study_anonymize(request, public_id):
    return _anonymize(request, Target(Level.STUDY, public_id))


@console_view(GET=ADMIN, POST=ADMIN)
def patient_anonymize(request, public_id):
    return _anonymize(request, Target(Level.PATIENT, public_id))


def _modify(request, target):
    if request.method == "POST":
        # Only what the form sent and the user changed: a field left as shown stays as it is.
        replace = {k: request.POST[k].strip() for k, _ in target.fields
                   if k in request.POST and request.POST[k].strip() != (target.current.get(k) or "")}
        if not replace:
            messages.info(request, "Nothing was changed.")
            return redirect(target.page)
        body = {"Replace": replace, "Force": "PatientID" in replace,
                "KeepSource": request.POST.get("keep_source") == "on"}
        return _submit(request, target, body, anonymize=False)
    fields = [(k, label, target.current.get(k) or "") for k, label in target.fields]
    return render(request, "console/study_edit.html", {
        "section": "studies" if target.level == Level.STUDY else "patients", "target": target,
        "patient": target.patient, "anonymize": False, "fields": fields, "count": target.instances.count(),
    })


def _anonymize(request, target):
    if request.method == "POST":
        body = {"KeepSource": request.POST.get("keep_source") == "on"}
        if request.POST.get("patient_name", "").strip():
            body["Replace"] = {"PatientName": request.POST["patient_name"].strip()}
        if request.POST.get("allow_burned_in") == "on":
            body["AllowBurnedInAnnotation"] = True
        return _submit(request, target, body, anonymize=True)
    return render(request, "console/study_edit.html", {
        "section": "studies" if target.level == Level.STUDY else "patients", "target": target,
        "patient": target.patient, "anonymize": True, "changes": _profile_preview(target.instances),
        "count": target.instances.count(), "method": confidentiality.METHOD,
    })


def _submit(request, target, body, anonymize):
    try:
        change = editing.parse_request(body, target.level, anonymize)
        instance_ids = editing.source_instances(target.level, target.public_id)
    except editing.InvalidEdit as error:
        messages.error(request, str(error))
        return redirect(target.page)
    remapped = [] if anonymize else editing.source_uids(target.level, target.public_id, change)
    job = modification.submit(editing.Plan(change, instance_ids, target.level, remapped), "modify", target.public_id,
                              request.user.get_username(), asynchronous=True)
    messages.success(request, ("Anonymizing" if anonymize else "Modifying") +
                     f" {len(instance_ids)} instance{'s' if len(instance_ids) != 1 else ''} in the background; "
                     "the result is linked below when it is done.")
    if target.level == Level.STUDY:
        return redirect(f"{target.page}?job={job.id}#actions")
    return redirect(f"/ui/jobs/?type={job.type}")


def _profile_preview(instances):
    """What anonymizing does, read from one of the files: each attribute the profile
    changes, its value here, and what it becomes."""
    instance = instances.order_by("pk").first()
    if instance is None:
        return []
    try:
        dataset = pydicom.dcmread(io.BytesIO(editing.read_source(instance.public_id)), stop_before_pixels=True)
    except Exception:  # an unreadable file shows no preview; the job reports it
        return []
    changes = []
    for element in dataset:
        action = confidentiality.ACTIONS.get(element.keyword)
        if action is None and element.VR == "PN":
            action = "Z"
        if action is None and not element.tag.is_private:
            continue
        value = "(sequence)" if element.VR == "SQ" else str(element.value)[:80]
        outcome = {"X": "removed", "Z": "emptied"}.get(action, "removed (private)")
        if element.keyword == "PatientName":
            outcome = "replaced by a generated name"
        elif element.keyword == "PatientID":
            outcome = "replaced by a generated ID"
        changes.append((element.keyword or str(element.tag), value, outcome))
    changes.append(("UIDs", "study, series, instances, references", "replaced, consistently"))
    return changes



def _ticked(request):
    """The ticked studies of the study list's bulk bar that still exist, and where to go back."""
    ids = [i for i in request.POST.getlist("study") if Study.objects.filter(public_id=i).exists()]
    back = request.POST.get("next") or "/ui/studies/"
    return ids, back if back.startswith("/ui/") else "/ui/studies/"


@console_view(GET=None, POST=ADMIN)
def bulk_label(request):
    """The bulk bar's Label: the label on every ticked study."""
    ids, back = _ticked(request)
    name = request.POST.get("label", "").strip()
    if not ids:
        messages.error(request, "Tick at least one study first.")
        return redirect(back)
    try:
        for public_id in ids:
            labels.add_label(Level.STUDY, public_id, name)
    except labels.InvalidLabel:
        messages.error(request, f"“{name}” is not a label: use 1 to 64 letters, digits, “_” or “-”.")
        return redirect(back)
    audit(request, "annotate", level=Level.STUDY, resource=",".join(ids)[:128], label=name)
    messages.success(request, f"Labelled {len(ids)} stud{'y' if len(ids) == 1 else 'ies'} “{name}”.")
    return redirect(back)


@console_view(GET=None, POST=ADMIN)
def bulk_anonymize(request):
    """The bulk bar's Anonymize: the ticked studies in one job (one anonymous patient per patient)."""
    ids, back = _ticked(request)
    if not ids:
        messages.error(request, "Tick at least one study first.")
        return redirect(back)
    try:
        plan = editing.plan_bulk({"Resources": ids, "Level": Level.STUDY}, anonymize=True)
    except editing.InvalidEdit as error:
        messages.error(request, str(error))
        return redirect(back)
    job = modification.submit(plan, "bulk", None, request.user.get_username(), asynchronous=True)
    messages.success(request, f"Anonymizing {len(ids)} stud{'y' if len(ids) == 1 else 'ies'} in one job; "
                              "its progress is below.")
    return redirect(f"/ui/jobs/?type={job.type}")
