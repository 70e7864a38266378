"""The modality worklist (archive.worklist): the scheduled procedure steps that
modalities find, filtered as their worklist queries are; administrators schedule
and cancel steps by hand. And the performed procedure steps (archive.mpps) the
modalities reported."""

from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Prefetch, prefetch_related_objects
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone

from archive import mpps, worklist
from archive.models import PerformedStep
from archive.roles import ADMIN
from console.access import audit, back_to, console_view, newest_first, page_number
from console.forms import EVERY_STEP, WorklistItemForm, WorklistSearchForm
from console.templatetags.console import dicom_date, person

PAGE_SIZE = 25
PERFORMED_PAGE_SIZE = 50
LEVEL = "Worklist"  # the audit trail's level of what these pages read and write

# What the performed steps page shows of a step's attributes (DICOM JSON model, PS3.3 C.4.13 - C.4.16).
PATIENT_NAME, PATIENT_ID = "00100010", "00100020"
STEP_ID, STEP_DESCRIPTION = "00400253", "00400254"
START_DATE, START_TIME = "00400244", "00400245"
END_DATE, END_TIME = "00400250", "00400251"


@console_view()
def worklist_list(request):
    data = request.GET.copy()
    # A modality asks for today's steps, and so does this page unless told otherwise
    # (an empty date: every date).
    data.setdefault("date", timezone.localdate().isoformat())
    form = WorklistSearchForm(data)
    number = page_number(request)
    items, has_next, error = [], False, None
    if form.is_valid():
        criteria = form.criteria()
        items, has_next = worklist.find(criteria, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE,
                                        finished=form.finished())
        # Each item's performed steps, in one query for the page.
        prefetch_related_objects(items, Prefetch("performed_steps",
                                                 queryset=PerformedStep.objects.order_by("created_at", "pk")))
        audit(request, "query", level=LEVEL, query=criteria, answers=len(items))
    else:
        error = "Check the search fields below."
    return render(request, "console/worklist.html", {
        "section": "worklist", "form": form, "items": items, "error": error, "finished": worklist.FINISHED,
        "date": form.cleaned_data.get("date") if not error else None, "page_number": number,
        "has_previous": number > 1, "has_next": has_next, "next": request.get_full_path(),
        "searched": any(v for k, v in request.GET.items() if k != "page"),
    })


@console_view(GET=ADMIN, POST=ADMIN)
def worklist_new(request):
    form = WorklistItemForm(request.POST or None, initial={"start_date": timezone.localdate()})
    if request.method == "POST" and form.is_valid():
        try:
            item = worklist.create(form.order())
        except worklist.InvalidOrder as error:
            form.add_error(None, f"Not scheduled: {error}.")
        else:
            audit(request, "store", level=LEVEL, resource=str(item.pk), accession=item.accession_number,
                  patient_id=item.patient_id, scheduled_step_id=item.scheduled_step_id)
            messages.success(request, f"Scheduled {item.modality} for {person(item.patient_name)} "
                                      f"(accession {item.accession_number}) on {dicom_date(item.start_date)}.")
            return redirect("/ui/worklist/?" + urlencode({"date": dicom_date(item.start_date)}))
    return render(request, "console/worklist_form.html", {"section": "worklist", "form": form})


@console_view(GET=None, POST=ADMIN)
def worklist_cancel(request, item_id):
    item = worklist.get(item_id)
    if item is None:
        raise Http404("This worklist item does not exist.")
    if item.status in worklist.FINISHED:
        messages.info(request, f"Accession {item.accession_number} was already {item.status.lower()}.")
    else:
        worklist.cancel(item_id)
        audit(request, "delete", level=LEVEL, resource=str(item_id), accession=item.accession_number,
              patient_id=item.patient_id, cancelled=True)
        messages.success(request, f"Cancelled accession {item.accession_number} of {person(item.patient_name)}: "
                                  "modalities no longer find it.")
    return redirect(back_to(request, "/ui/worklist/"))


@console_view()
def performed_list(request):
    rows = PerformedStep.objects.select_related("worklist_item").order_by("-created_at", "-pk")
    status = request.GET.get("status", "")
    if status in mpps.PERFORMED:
        rows = rows.filter(status=status)
    page = newest_first(request, rows, PERFORMED_PAGE_SIZE)
    steps = [describe(step) for step in page.pop("rows")]
    audit(request, "query", level=LEVEL, query={"PerformedProcedureStepStatus": status}, answers=len(steps))
    return render(request, "console/performed.html", {
        "section": "worklist", "steps": steps, **page, "statuses": mpps.PERFORMED, "selected_status": status,
    })


def describe(step):
    """What the performed steps page shows of a step: its attributes as the modality set
    them, and the worklist item it performs (the patient from there when the step has none)."""
    attributes, item = step.attributes, step.worklist_item
    return {
        "step": step, "item": item,
        "step_id": _value(attributes, STEP_ID), "description": _value(attributes, STEP_DESCRIPTION),
        "patient_name": _value(attributes, PATIENT_NAME) or (item.patient_name if item else ""),
        "patient_id": _value(attributes, PATIENT_ID) or (item.patient_id if item else ""),
        "start_date": _value(attributes, START_DATE), "start_time": _value(attributes, START_TIME),
        "end_date": _value(attributes, END_DATE), "end_time": _value(attributes, END_TIME),
        "series": len(step.performed_series),
        "instances": sum(len(series.get("Instances") or []) for series in step.performed_series),
        "item_link": _item_link(item) if item else "",
    }


def _item_link(item):
    """The worklist page showing this item whatever its status."""
    date = dicom_date(item.start_date) if item.start_date else ""
    return "/ui/worklist/?" + urlencode({"date": date, "accession": item.accession_number, "status": EVERY_STEP})


def _value(attributes, tag):
    """The first value of an element of the DICOM JSON model as text ("" when absent or empty)."""
    values = (attributes.get(tag) or {}).get("Value") or [""]
    value = values[0]
    if isinstance(value, dict):  # a person name (PS3.18 F.2.2)
        value = value.get("Alphabetic", "")
    return str(value if value is not None else "").strip()
