"""Modality Performed Procedure Steps (PS3.4 F.7): what a modality reports of the
work it does, and the worklist items that work was scheduled as.

A step is created IN PROGRESS (N-CREATE), updated (N-SET) while it is in
progress, and never changes again once COMPLETED or DISCONTINUED (PS3.4
F.7.2.2.3). Attributes come in and are kept in the DICOM JSON model (PS3.18
F.2), so a DIMSE dataset, a REST body and a test's dict are the same here.
The worklist items a step performs are found from its Scheduled Step
Attributes Sequence and follow its status, so a modality that polls the
worklist sees what is being done and what is done.
"""

from django.utils import timezone

from archive import db
from archive.errors import (  # noqa: F401 (raised here, caught by name)
    DuplicatePerformedStep, FinalPerformedStep, InvalidPerformedStep, UnknownPerformedStep,
)
from archive.models import PerformedStep, StepStatus, WorklistItem
from archive.tags import normalize

# Tags in the DICOM JSON model's spelling.
SPECIFIC_CHARACTER_SET = "00080005"
ACCESSION_NUMBER = "00080050"
STUDY_INSTANCE_UID = "0020000D"
SERIES_INSTANCE_UID = "0020000E"
SERIES_DESCRIPTION = "0008103E"
PROTOCOL_NAME = "00181030"
RETRIEVE_AE_TITLE = "00080054"
REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"
REFERENCED_IMAGES = "00081140"
REFERENCED_NON_IMAGES = "00400220"
SCHEDULED_STEP_ID = "00400009"
STEP_STATUS = "00400252"
SCHEDULED_STEPS = "00400270"
PERFORMED_SERIES = "00400340"

PERFORMED = (StepStatus.IN_PROGRESS, StepStatus.COMPLETED, StepStatus.DISCONTINUED)
FINAL = (StepStatus.COMPLETED, StepStatus.DISCONTINUED)


def create(sop_instance_uid, attributes, calling_aet=""):
    """Create a step IN PROGRESS from its N-CREATE attributes (DICOM JSON); the PerformedStep.

    The worklist items it names go IN PROGRESS with it."""
    if not sop_instance_uid:
        raise InvalidPerformedStep("the step has no SOP Instance UID")
    status = _status(attributes)
    # PS3.4 F.7.2.1.3: an N-CREATE with any other status is refused.
    if status != StepStatus.IN_PROGRESS:
        raise InvalidPerformedStep(f"Performed Procedure Step Status must be IN PROGRESS, not {status!r}")
    return db.run(_create, str(sop_instance_uid), attributes, calling_aet)


def update(sop_instance_uid, modifications):
    """Apply an N-SET's modification list (DICOM JSON) to a step in progress; the PerformedStep.

    Each attribute given replaces the one kept, a sequence with all its items
    (PS3.4 F.7.2.2.2); the worklist items follow the step's status."""
    if STEP_STATUS in modifications and _status(modifications) not in PERFORMED:
        raise InvalidPerformedStep(f"unknown Performed Procedure Step Status {_status(modifications)!r}")
    return db.run(_update, str(sop_instance_uid), modifications)


def _create(sop_instance_uid, attributes, calling_aet):
    if PerformedStep.objects.filter(sop_instance_uid=sop_instance_uid).exists():
        raise DuplicatePerformedStep(sop_instance_uid)
    now = timezone.now()
    items = _scheduled_items(attributes)
    # A race with another N-CREATE of the same UID ends in a unique violation:
    # db.run replays this unit, which then finds the winner's row.
    step = PerformedStep.objects.create(
        sop_instance_uid=sop_instance_uid, status=StepStatus.IN_PROGRESS, calling_aet=calling_aet[:16],
        worklist_item=items[0] if items else None, attributes=attributes,
        performed_series=_performed_series(attributes), created_at=now, updated_at=now,
    )
    _follow(items, step.status, now)
    return step


def _update(sop_instance_uid, modifications):
    step = PerformedStep.objects.select_for_update().filter(sop_instance_uid=sop_instance_uid).first()
    if step is None:
        raise UnknownPerformedStep(sop_instance_uid)
    if step.status in FINAL:
        raise FinalPerformedStep(f"the step is {step.status}")
    # The character set of an N-SET does not replace the step's (PS3.4
    # F.7.2.2.3); the JSON model holds decoded text, so the first one stays.
    changes = {tag: value for tag, value in modifications.items() if tag != SPECIFIC_CHARACTER_SET}
    step.attributes = {**step.attributes, **changes}
    step.status = _status(step.attributes)
    step.performed_series = _performed_series(step.attributes)
    step.updated_at = timezone.now()
    step.save(update_fields=["attributes", "status", "performed_series", "updated_at"])
    _follow(_scheduled_items(step.attributes), step.status, step.updated_at)
    return step


def _follow(items, status, now):
    if items:
        WorklistItem.objects.filter(pk__in=[item.pk for item in items]).update(status=status, updated_at=now)


def _scheduled_items(attributes):
    """The worklist items the Scheduled Step Attributes Sequence names.

    An item names a step by its accession number and scheduled procedure step
    id (what the modality received from the worklist), or by its Study Instance
    UID when it has no accession number. An unscheduled step (PS3.4 F.7.2.1.2
    note 3: zero-length keys) names none."""
    found = {}
    for scheduled in _items(attributes, SCHEDULED_STEPS):
        accession = normalize(_text(scheduled, ACCESSION_NUMBER))
        step_id = _text(scheduled, SCHEDULED_STEP_ID)
        study_uid = _text(scheduled, STUDY_INSTANCE_UID)
        if accession:
            rows = WorklistItem.objects.filter(accession_number_norm=accession)
        elif study_uid:
            rows = WorklistItem.objects.filter(study_instance_uid=study_uid)
        else:
            continue
        if step_id:
            rows = rows.filter(scheduled_step_id=step_id)
        for item in rows.order_by("pk"):
            found.setdefault(item.pk, item)
    return list(found.values())


def _performed_series(attributes):
    """The Performed Series Sequence in short, for the console: each series and its instances."""
    series = []
    for item in _items(attributes, PERFORMED_SERIES):
        instances = [
            {"SOPClassUID": _text(ref, REFERENCED_SOP_CLASS_UID), "SOPInstanceUID": _text(ref, REFERENCED_SOP_INSTANCE_UID)}
            for ref in _items(item, REFERENCED_IMAGES) + _items(item, REFERENCED_NON_IMAGES)
        ]
        series.append({
            "SeriesInstanceUID": _text(item, SERIES_INSTANCE_UID),
            "SeriesDescription": _text(item, SERIES_DESCRIPTION),
            "ProtocolName": _text(item, PROTOCOL_NAME),
            "RetrieveAETitle": _text(item, RETRIEVE_AE_TITLE),
            "Instances": instances,
        })
    return series


def _status(attributes):
    return _text(attributes, STEP_STATUS).upper()


def _items(attributes, tag):
    element = attributes.get(tag) or {}
    return [item for item in element.get("Value") or [] if isinstance(item, dict)]


def _text(attributes, tag):
    """The first value of an element of the JSON model as text ("" when absent or empty)."""
    element = attributes.get(tag) or {}
    values = element.get("Value") or []
    if not values or values[0] is None:
        return ""
    value = values[0]
    if isinstance(value, dict):  # a person name: {"Alphabetic": ...}
        value = value.get("Alphabetic", "")
    return str(value).strip()
