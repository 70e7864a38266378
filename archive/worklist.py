"""The modality worklist: orders in, scheduled procedure steps out (IHE RAD-4 → RAD-5).

Services take plain values (an Order, Demographics) from whichever transport
received them (the HL7 listener, REST) and write in one unit of work run by
db.run. Selectors answer the Modality Worklist C-FIND and the REST listing with
the archive's own matching engine (query.condition): a name finds a worklist item
exactly as it finds a stored study. The DICOM attributes of an item (PS3.4 K.6.1,
the IHE Scheduled Workflow return keys) are built here, once, for both.

Everything lives in the shared database: an order received by one node's HL7
listener is in the worklist that every node's DICOM listener serves.
"""

import re
import uuid
from dataclasses import dataclass, field

from django.db.models import Q
from django.utils import timezone
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from archive import db, query, tags
from archive.errors import InvalidOrder, UnknownOrder
from archive.identifiers import patient_public_id
from archive.models import Hl7Message, Patient, StepStatus, WorklistItem

# What an order asks of its scheduled procedure step(s).
NEW, CHANGE, CANCEL, DISCONTINUE, STATUS = "new", "change", "cancel", "discontinue", "status"
ACTIONS = (NEW, CHANGE, CANCEL, DISCONTINUE, STATUS)
# Steps a modality no longer gets: done, or withdrawn by the RIS.
FINISHED = (StepStatus.CANCELLED, StepStatus.COMPLETED, StepStatus.DISCONTINUED)

# The attributes of an item (PS3.3 C.4.10 - C.4.11, PS3.4 K.6.1.2.2) and the column
# that holds each: the top level of the dataset, then its Scheduled Procedure Step
# Sequence item. Both directions use them: an item's dataset (C-FIND, REST), and
# an order from a dataset (REST).
TOP_LEVEL = {
    "AccessionNumber": "accession_number",
    "ReferringPhysicianName": "referring_physician",
    "RequestingPhysician": "requesting_physician",
    "PlacerOrderNumberImagingServiceRequest": "placer_order_number",
    "FillerOrderNumberImagingServiceRequest": "filler_order_number",
    "RequestedProcedureID": "requested_procedure_id",
    "RequestedProcedureDescription": "requested_procedure_description",
    "StudyInstanceUID": "study_instance_uid",
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "IssuerOfPatientID": "issuer_of_patient_id",
    "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex",
}
STEP = {
    "ScheduledStationAETitle": "scheduled_station_aet",
    "ScheduledStationName": "scheduled_station_name",
    "ScheduledProcedureStepStartDate": "start_date",
    "ScheduledProcedureStepStartTime": "start_time",
    "Modality": "modality",
    "ScheduledProcedureStepDescription": "scheduled_step_description",
    "ScheduledProcedureStepID": "scheduled_step_id",
    "ScheduledProcedureStepStatus": "status",
}
STEP_SEQUENCE = "ScheduledProcedureStepSequence"
PATIENT_FIELDS = ("patient_id", "issuer_of_patient_id", "patient_name", "patient_birth_date", "patient_sex")

# Matching keys (PS3.4 K.6.1.2.2 lists the ones IHE requires: station AE title,
# modality, start date and time, patient name and ID, accession number) → the
# column and whether it holds tags.normalize()d text. Names and identifiers match
# as the archive's do: case- and accent-insensitively (archive/query.py).
MATCHING = {
    "ScheduledStationAETitle": ("scheduled_station_aet", False),
    "Modality": ("modality", False),
    "ScheduledProcedureStepStartDate": ("start_date", False),
    "ScheduledProcedureStepStartTime": ("start_time", False),
    "ScheduledProcedureStepID": ("scheduled_step_id", False),
    "ScheduledStationName": ("scheduled_station_name", False),
    "PatientName": ("patient_name_norm", True),
    "PatientID": ("patient_id_norm", True),
    "AccessionNumber": ("accession_number_norm", True),
    "StudyInstanceUID": ("study_instance_uid", False),
    "RequestedProcedureID": ("requested_procedure_id", False),
}

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
DATE = re.compile(r"^[0-9]{8}$")
TIME = re.compile(r"^[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?$")
SEXES = ("M", "F", "O")


@dataclass
class Demographics:
    """A patient as the RIS or a client describes them. A value None was not given
    and is left as it is; "" was given empty and clears it."""

    patient_id: str
    issuer_of_patient_id: str | None = None
    patient_name: str | None = None  # DICOM PN: Family^Given^Middle^Prefix^Suffix
    patient_birth_date: str | None = None  # DA
    patient_sex: str | None = None  # M, F, O


@dataclass
class Order:
    """One scheduled procedure step of an order, and what to do with it.

    The step is named by (placer_order_number, scheduled_step_id). A cancel,
    discontinue or status change without a step id acts on every step of the order.
    """

    action: str
    placer_order_number: str = ""
    scheduled_step_id: str = ""
    filler_order_number: str = ""
    accession_number: str = ""
    requested_procedure_id: str = ""
    requested_procedure_description: str = ""
    scheduled_step_description: str = ""
    study_instance_uid: str = ""
    modality: str = ""
    scheduled_station_aet: str = ""
    scheduled_station_name: str = ""
    start_date: str = ""
    start_time: str = ""
    referring_physician: str = ""
    requesting_physician: str = ""
    patient: Demographics | None = None
    # The new status of a STATUS action (a StepStatus value).
    status: str = ""
    # Further attributes of the item, in the DICOM JSON model, returned as given.
    attributes: dict = field(default_factory=dict)


@dataclass
class Received:
    """A message as received (decoded text), for the record kept of every one."""

    raw: str
    remote_address: str = ""
    control_id: str = ""
    message_type: str = ""
    node: str = ""


# --- services -----------------------------------------------------------------


def apply_orders(orders, received=None):
    """Apply the orders of one message in one unit of work: all or none. With
    `received`, the message is recorded as accepted (AA) in the same unit, so an
    acknowledged message always had its effect. The items touched, in order."""
    for order in orders:
        _check(order)
    return db.run(_apply_orders, orders, received, timezone.now())


def create(order):
    """A new scheduled procedure step (or the one of the same key, rescheduled)."""
    order.action = NEW
    return apply_orders([order])[0]


def cancel(item_id):
    """Cancel the item (REST DELETE): a modality no longer finds it. The item, or None."""
    if not _is_key(item_id):
        return None

    def unit():
        item = WorklistItem.objects.select_for_update().filter(pk=item_id).first()
        if item is not None:
            item.status = StepStatus.CANCELLED
            item.updated_at = timezone.now()
            item.save(update_fields=["status", "updated_at"])
        return item

    return db.run(unit)


def update_patient(demographics, received=None):
    """Update a patient's demographics (ADT^A08 / A31) in the worklist items of that
    patient and in the archive's index (the patient row's main DICOM tags and its
    normalised columns), in one unit of work. The stored files are not rewritten.

    Only what `demographics` gives changes (None: left as it is). The index keeps
    the patient tags on the patient row only (archive/tags.py, PATIENT_TAGS): the
    studies show them from there. Returns (worklist items, patients) updated.
    """
    if not (demographics.patient_id or "").strip():
        raise InvalidOrder("the patient has no patient ID")
    _check_demographics(demographics)
    return db.run(_update_patient, demographics, received, timezone.now())


def record_message(received, outcome, error=""):
    """Keep a message that was not applied (outcome AE or AR) with the reason."""
    return db.run(_insert_message, received, outcome, error, timezone.now())


# --- selectors ----------------------------------------------------------------


def find(criteria, limit=None, offset=0, finished=False):
    """Items matching `criteria` (keyword → DICOM matching string), in schedule
    order, and whether `limit` cut the answer. Keys the worklist does not match
    on do not restrict it. Cancelled, completed and discontinued steps are left
    out unless `finished`."""
    rows = WorklistItem.objects.all()
    if not finished:
        rows = rows.exclude(status__in=FINISHED)
    for keyword, value in criteria.items():
        if keyword in MATCHING:
            column, normalized = MATCHING[keyword]
            where = query.condition(column, keyword, value, normalized)
            if where is not None:
                rows = rows.filter(where)
    rows = rows.order_by("start_date", "start_time", "pk")
    end = None if limit is None else offset + limit + 1
    found = list(rows[offset:end])
    more = limit is not None and len(found) > limit
    return (found[:limit] if more else found), more


def get(item_id):
    """The item, or None."""
    return WorklistItem.objects.filter(pk=item_id).first() if _is_key(item_id) else None


def _is_key(item_id):
    # A number past the primary key's range names nothing (and would fail the query).
    return isinstance(item_id, int) and 0 < item_id < 2 ** 63


def dataset(item):
    """Every attribute of the item as a modality sees it (PS3.4 K.6.1.2.2): the
    top-level keys, and one Scheduled Procedure Step Sequence item. Attributes the
    columns do not hold come from `attributes`, as given."""
    answer = Dataset.from_json(item.attributes) if item.attributes else Dataset()
    answer.SpecificCharacterSet = "ISO_IR 192"
    for keyword, column in TOP_LEVEL.items():
        setattr(answer, keyword, getattr(item, column) or "")
    steps = answer.get(STEP_SEQUENCE)
    step = steps[0] if steps else Dataset()
    for keyword, column in STEP.items():
        setattr(step, keyword, getattr(item, column) or "")
    if "ScheduledPerformingPhysicianName" not in step:
        step.ScheduledPerformingPhysicianName = ""
    answer.ScheduledProcedureStepSequence = [step]
    return answer


def order_from_dataset(source):
    """An Order (action NEW) from a dataset of worklist attributes (REST). A step
    without a placer order number or a step ID gets a generated step ID."""
    steps = source.get(STEP_SEQUENCE)
    step = steps[0] if steps else Dataset()
    values = {}
    for container, table in ((source, TOP_LEVEL), (step, STEP)):
        for keyword, column in table.items():
            if keyword in container and column != "status":
                values[column] = _text(container[keyword].value)
    patient = Demographics(**{name: values.pop(name, None) for name in PATIENT_FIELDS})
    patient.patient_id = patient.patient_id or ""
    if not values.get("placer_order_number") and not values.get("scheduled_step_id"):
        values["scheduled_step_id"] = uuid.uuid4().hex[:16].upper()
    order = Order(action=NEW, patient=patient, **values)
    # What the columns do not hold is kept as given.
    rest = Dataset()
    for element in source:
        if element.keyword not in TOP_LEVEL and element.keyword not in (STEP_SEQUENCE, "SpecificCharacterSet"):
            rest.add(element)
    extra_step = Dataset()
    for element in step:
        if element.keyword not in STEP:
            extra_step.add(element)
    if len(extra_step):
        rest.ScheduledProcedureStepSequence = [extra_step]
    order.attributes = rest.to_json_dict() if len(rest) else {}
    return order


# --- the units of work --------------------------------------------------------


def _apply_orders(orders, received, now):
    items = []
    for order in orders:
        items.extend(_apply(order, now))
    if received is not None:
        _insert_message(received, "AA", "", now)
    return items


def _apply(order, now):
    if order.action in (NEW, CHANGE):
        return [_schedule(order, now)]
    rows = WorklistItem.objects.select_for_update().filter(placer_order_number=order.placer_order_number)
    if order.scheduled_step_id:
        rows = rows.filter(scheduled_step_id=order.scheduled_step_id)
    items = list(rows.order_by("pk"))
    if not items:
        step = f" step {order.scheduled_step_id}" if order.scheduled_step_id else ""
        raise UnknownOrder(f"no order {order.placer_order_number}{step} in the worklist")
    status = {CANCEL: StepStatus.CANCELLED, DISCONTINUE: StepStatus.DISCONTINUED}.get(order.action, order.status)
    for item in items:
        item.status = status
        item.updated_at = now
        item.save(update_fields=["status", "updated_at"])
    return items


def _schedule(order, now):
    item = (WorklistItem.objects.select_for_update()
            .filter(placer_order_number=order.placer_order_number, scheduled_step_id=order.scheduled_step_id)
            .first())
    if item is None:
        # A change of an order we never saw carries the whole order: take it as new.
        item = WorklistItem(placer_order_number=order.placer_order_number, scheduled_step_id=order.scheduled_step_id,
                            status=StepStatus.SCHEDULED, created_at=now, attributes={})
    elif order.action == NEW:
        # The same order sent again (a RIS resends what it got no ACK for), or
        # ordered anew after a cancel: scheduled, with the latest details.
        item.status = StepStatus.SCHEDULED
    for name in ("filler_order_number", "accession_number", "requested_procedure_id",
                 "requested_procedure_description", "scheduled_step_description", "modality",
                 "scheduled_station_aet", "scheduled_station_name", "start_date", "start_time",
                 "referring_physician", "requesting_physician"):
        setattr(item, name, getattr(order, name))
    # The study's UID is kept once known: images may already carry it.
    item.study_instance_uid = order.study_instance_uid or item.study_instance_uid or generate_uid()
    if order.attributes:
        item.attributes = order.attributes
    _set_patient(item, order.patient)
    item.accession_number_norm = tags.normalize(item.accession_number)
    item.updated_at = now
    _fit(item)
    item.save()
    return item


def _set_patient(item, patient):
    for name in PATIENT_FIELDS:
        value = getattr(patient, name)
        if value is not None:
            setattr(item, name, value)
    item.patient_id_norm = tags.normalize(item.patient_id)
    item.patient_name_norm = tags.normalize(item.patient_name)


def _update_patient(demographics, received, now):
    items = WorklistItem.objects.filter(patient_id=demographics.patient_id)
    if demographics.issuer_of_patient_id:
        items = items.filter(Q(issuer_of_patient_id="") | Q(issuer_of_patient_id=demographics.issuer_of_patient_id))
    changes = {}
    if demographics.patient_name is not None:
        changes.update(patient_name=demographics.patient_name,
                       patient_name_norm=tags.normalize(demographics.patient_name))
    if demographics.patient_birth_date is not None:
        changes["patient_birth_date"] = demographics.patient_birth_date
    if demographics.patient_sex is not None:
        changes["patient_sex"] = demographics.patient_sex
    _fit_values(WorklistItem, changes)
    updated_items = items.update(updated_at=now, **changes) if changes else 0

    updated_patients = 0
    index = {"PatientName": demographics.patient_name, "PatientBirthDate": demographics.patient_birth_date,
             "PatientSex": demographics.patient_sex}
    index = {keyword: value for keyword, value in index.items() if value is not None}
    if index:
        for patient in Patient.objects.select_for_update().filter(public_id=patient_public_id(demographics.patient_id)):
            patient.main_dicom_tags = {**patient.main_dicom_tags, **index}
            main = patient.main_dicom_tags
            # The normalised columns as the ingest path writes them (archive/ingest.py).
            patient.patient_name_norm = tags.normalize(main.get("PatientName"))[:324]
            birth_date = (main.get("PatientBirthDate") or "").strip()
            patient.patient_birth_date = birth_date[:8] if len(birth_date) >= 8 and birth_date[:8].isdigit() else ""
            patient.patient_sex = (main.get("PatientSex") or "")[:16]
            patient.save(update_fields=["main_dicom_tags", "patient_name_norm", "patient_birth_date", "patient_sex"])
            updated_patients += 1
    if received is not None:
        _insert_message(received, "AA", "", now)
    return updated_items, updated_patients


def _insert_message(received, outcome, error, now):
    values = dict(received_at=now, node=received.node, remote_address=received.remote_address,
                  control_id=received.control_id, message_type=received.message_type,
                  raw=received.raw, outcome=outcome, error=error)
    # A garbled message may hold NUL, which PostgreSQL text cannot: kept visibly replaced.
    values = {name: value.replace("\x00", "\ufffd") if isinstance(value, str) else value
              for name, value in values.items()}
    _fit_values(Hl7Message, values)
    return Hl7Message.objects.create(**values)


# --- checks -------------------------------------------------------------------


def _check(order):
    if order.action not in ACTIONS:
        raise InvalidOrder(f"unknown order action {order.action!r}")
    if order.action in (CANCEL, DISCONTINUE, STATUS):
        if not order.placer_order_number:
            raise InvalidOrder("the order has no placer order number: nothing names the order to change")
        if order.action == STATUS and order.status not in StepStatus.values:
            raise InvalidOrder(f"unknown scheduled procedure step status {order.status!r}")
        return
    if not order.placer_order_number and not order.scheduled_step_id:
        raise InvalidOrder("the order has neither a placer order number nor a scheduled procedure step ID")
    if order.patient is None or not (order.patient.patient_id or "").strip():
        raise InvalidOrder("the order has no patient ID")
    _check_demographics(order.patient)
    if order.study_instance_uid and (len(order.study_instance_uid) > 64 or not UID.match(order.study_instance_uid)):
        raise InvalidOrder(f"Study Instance UID {order.study_instance_uid!r} is not a valid UID")
    if order.start_date and not DATE.match(order.start_date):
        raise InvalidOrder(f"start date {order.start_date!r} is not a date (YYYYMMDD)")
    if order.start_time and not TIME.match(order.start_time):
        raise InvalidOrder(f"start time {order.start_time!r} is not a time (HHMMSS)")
    order.modality = order.modality.strip().upper()


def _check_demographics(patient):
    if patient.patient_birth_date and not DATE.match(patient.patient_birth_date):
        raise InvalidOrder(f"birth date {patient.patient_birth_date!r} is not a date (YYYYMMDD)")
    if patient.patient_sex and patient.patient_sex not in SEXES:
        raise InvalidOrder(f"patient sex {patient.patient_sex!r} is not M, F or O")


def _fit(row):
    """Cut every text column to its length: a long HL7 value must not fail the unit."""
    for column in row._meta.get_fields():
        limit = getattr(column, "max_length", None)
        value = getattr(row, column.attname, None) if hasattr(column, "attname") else None
        if limit and isinstance(value, str) and len(value) > limit:
            setattr(row, column.attname, value[:limit])


def _fit_values(model, values):
    for name, value in values.items():
        limit = getattr(model._meta.get_field(name), "max_length", None)
        if limit and isinstance(value, str):
            values[name] = value[:limit]


def _text(value):
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()
