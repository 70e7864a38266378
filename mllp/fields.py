"""HL7 v2 → worklist values: the one table of where each value is read.

FIELDS names, for each value the worklist needs, the HL7 locations tried in turn;
the first one that holds a value wins. The defaults are the choices of IHE RAD-4
that most archives make (DESIGN §16): accession number OBR-18, requested
procedure ID OBR-19, scheduled procedure step ID OBR-20, modality OBR-24,
scheduled station AE title ORC-18 else OBR-21, start ORC-7.4 else OBR-27.4 then
OBR-36, Study Instance UID from a ZDS segment; the patient from PID-3/5/7/8. The
IPC and TQ1 locations after them serve OMI^O23 (HL7 v2.5), where an IPC segment
names each step. PACS_HL7_FIELDS overrides any entry (pacsweb/settings.py).

A path without a component reads the first component of a plain value, and the
whole value of a name (XPN, XCN) or a time stamp.
"""

import re

from archive import worklist
from mllp.hl7v2 import (
    NULL, REQUIRED_FIELD_MISSING, SEGMENT_SEQUENCE_ERROR, TABLE_VALUE_NOT_FOUND, Path, Rejected, components, raw,
    unescape,
)

FIELDS = {
    "order_control": ["ORC-1"],
    "order_status": ["ORC-5"],
    "placer_order_number": ["ORC-2.1", "OBR-2.1"],
    "filler_order_number": ["ORC-3.1", "OBR-3.1"],
    "accession_number": ["OBR-18", "IPC-1"],
    "requested_procedure_id": ["OBR-19", "IPC-2"],
    "requested_procedure_description": ["OBR-44.2", "OBR-4.2"],
    "scheduled_step_id": ["OBR-20", "IPC-4"],
    "scheduled_step_description": ["OBR-4.2"],
    "modality": ["OBR-24", "IPC-5"],
    "scheduled_station_aet": ["ORC-18", "OBR-21", "IPC-9"],
    "scheduled_station_name": ["IPC-7"],
    "start": ["ORC-7.4", "TQ1-7", "OBR-27.4", "OBR-36"],
    "study_instance_uid": ["ZDS-1.1", "IPC-3"],
    "referring_physician": ["PV1-8", "OBR-16"],
    "requesting_physician": ["ORC-12", "OBR-16"],
    "patient_id": ["PID-3.1"],
    "issuer_of_patient_id": ["PID-3.4"],
    "patient_name": ["PID-5"],
    "patient_birth_date": ["PID-7"],
    "patient_sex": ["PID-8"],
}

# How a value is read: names and time stamps from their components, the rest as text.
PERSON = {"patient_name"}  # XPN: family^given^middle^suffix^prefix
PROVIDER = {"referring_physician", "requesting_physician"}  # XCN: id^family^given^middle^suffix^prefix
TIMESTAMP = {"start"}

# ORC-1 (HL7 table 0119) → what happens to the step; the codes a filler sends back
# for an order it cancelled or discontinued itself mean the same.
CONTROLS = {"NW": worklist.NEW, "XO": worklist.CHANGE, "CA": worklist.CANCEL, "OC": worklist.CANCEL,
            "DC": worklist.DISCONTINUE, "OD": worklist.DISCONTINUE, "SC": worklist.STATUS}
# ORC-5 of a status change (HL7 table 0038) → the step's status; another order
# status changes nothing (as dcm4chee does).
ORDER_STATUSES = {"SC": worklist.StepStatus.SCHEDULED, "IP": worklist.StepStatus.STARTED,
                  "CM": worklist.StepStatus.COMPLETED, "DC": worklist.StepStatus.DISCONTINUED,
                  "CA": worklist.StepStatus.CANCELLED}
SEXES = {"M": "M", "F": "F", "O": "O", "A": "O", "N": "O", "U": ""}
DIGITS = re.compile(r"^[0-9]+")


def table(overrides):
    """FIELDS with the overrides (name → list of paths) applied, as Path lists.
    Raises ValueError naming an unknown field or a malformed path."""
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; the fields are {', '.join(FIELDS)}")
    merged = {**FIELDS, **overrides}
    return {name: [Path.parse(text) for text in paths] for name, paths in merged.items()}


def orders(message, header, paths):
    """The worklist Orders of an ORM^O01 / OMI^O23: one per ORC group, or per IPC
    segment of the group when it has some. Raises Rejected when the structure is
    broken (an ORC without its OBR: a message cut short)."""
    common = {}
    groups = []
    for segment in message:
        name = str(segment[0]).strip().upper()
        if name == "ORC":
            groups.append({"ORC": segment, "IPC": []})
        elif groups:
            if name == "IPC":
                groups[-1]["IPC"].append(segment)
            else:
                groups[-1].setdefault(name, segment)
        else:
            common.setdefault(name, segment)
    if not groups:
        raise Rejected("AR", SEGMENT_SEQUENCE_ERROR, "the order has no ORC segment: the message is incomplete")
    found = []
    for number, group in enumerate(groups, start=1):
        if "OBR" not in group:
            raise Rejected("AR", SEGMENT_SEQUENCE_ERROR,
                           f"ORC number {number} has no OBR segment: the message is incomplete")
        steps = group.pop("IPC") or [None]
        for ipc in steps:
            scope = {**common, **group}
            if ipc is not None:
                scope["IPC"] = ipc
            order = _order(scope, header, paths)
            if order is not None:
                found.append(order)
    return found


def demographics(message, header, paths):
    """The patient of an ADT^A08 / A31, from its PID."""
    scope = {}
    for segment in message:
        scope.setdefault(str(segment[0]).strip().upper(), segment)
    if "PID" not in scope:
        raise Rejected("AR", SEGMENT_SEQUENCE_ERROR, "the message has no PID segment: the message is incomplete")
    patient = _patient(scope, header, paths)
    if not patient.patient_id:
        raise Rejected("AE", REQUIRED_FIELD_MISSING, "PID-3 (patient ID) is empty")
    return patient


def _order(scope, header, paths):
    control = _text(scope, header, paths["order_control"]).upper()
    if not control:
        raise Rejected("AE", REQUIRED_FIELD_MISSING, "ORC-1 (order control) is empty")
    if control not in CONTROLS:
        raise Rejected("AE", TABLE_VALUE_NOT_FOUND,
                       f"order control {control!r} is not supported (NW, XO, CA, OC, DC, OD, SC are)")
    action = CONTROLS[control]
    status = ""
    if action == worklist.STATUS:
        order_status = _text(scope, header, paths["order_status"]).upper()
        status = ORDER_STATUSES.get(order_status)
        if status is None:
            return None  # a status the worklist does not follow: nothing to do
        if status == worklist.StepStatus.CANCELLED:
            action, status = worklist.CANCEL, ""
    start_date, start_time = _timestamp(scope, header, paths["start"])
    order = worklist.Order(
        action=action,
        status=status,
        placer_order_number=_text(scope, header, paths["placer_order_number"]),
        filler_order_number=_text(scope, header, paths["filler_order_number"]),
        accession_number=_text(scope, header, paths["accession_number"]),
        requested_procedure_id=_text(scope, header, paths["requested_procedure_id"]),
        requested_procedure_description=_text(scope, header, paths["requested_procedure_description"]),
        scheduled_step_id=_text(scope, header, paths["scheduled_step_id"]),
        scheduled_step_description=_text(scope, header, paths["scheduled_step_description"]),
        study_instance_uid=_text(scope, header, paths["study_instance_uid"]),
        modality=_text(scope, header, paths["modality"]).upper(),
        scheduled_station_aet=_text(scope, header, paths["scheduled_station_aet"]),
        scheduled_station_name=_text(scope, header, paths["scheduled_station_name"]),
        start_date=start_date,
        start_time=start_time,
        referring_physician=_name(scope, header, paths["referring_physician"], provider=True) or "",
        requesting_physician=_name(scope, header, paths["requesting_physician"], provider=True) or "",
        patient=_patient(scope, header, paths),
    )
    if not order.placer_order_number:
        raise Rejected("AE", REQUIRED_FIELD_MISSING, "ORC-2 / OBR-2 (placer order number) is empty")
    return order


def _patient(scope, header, paths):
    patient_id = _text(scope, header, paths["patient_id"])
    sex = _value(scope, header, paths["patient_sex"])
    birth = _value(scope, header, paths["patient_birth_date"])
    issuer = _value(scope, header, paths["issuer_of_patient_id"])
    return worklist.Demographics(
        patient_id=patient_id,
        issuer_of_patient_id=None if issuer is None else unescape(issuer, header),
        patient_name=_name(scope, header, paths["patient_name"]),
        patient_birth_date=None if birth is None else _date(birth, header),
        patient_sex=None if sex is None else SEXES.get(unescape(sex, header)[:1].upper(), "O"),
    )


def _value(scope, header, paths):
    """The raw text of the first path that holds one: None when none does (not
    given), "" for HL7's null "" (given, to be cleared)."""
    for path in paths:
        text = raw(scope, path, header)
        if text == NULL:
            return ""
        if text.strip() != "" and text.replace(header.component, "").replace(header.subcomponent, "").strip():
            if not path.component:
                text = text.split(header.component)[0]
            if not path.subcomponent:
                text = text.split(header.subcomponent)[0]
            return text
    return None


def _text(scope, header, paths):
    text = _value(scope, header, paths)
    return "" if text is None else unescape(text, header).strip()


def _name(scope, header, paths, provider=False):
    """A DICOM PN (Family^Given^Middle^Prefix^Suffix) from an XPN (or an XCN, whose
    first component is the person's ID), None when not given."""
    for path in paths:
        text = raw(scope, path, header)
        if text == NULL:
            return ""
        if not text.replace(header.component, "").replace(header.subcomponent, "").strip():
            continue
        parts = components(text, header) if not path.component else [unescape(text, header)]
        if provider and not path.component:
            parts = parts[1:]
        parts = (parts + [""] * 5)[:5]
        # ^ = \ inside a name part (written escaped in HL7) would split the DICOM PN.
        family, given, middle, suffix, prefix = (_pn_part(p) for p in parts)
        return "^".join((family, given, middle, prefix, suffix)).rstrip("^")
    return None


def _pn_part(text):
    for delimiter in "^=\\":
        text = text.replace(delimiter, " ")
    return " ".join(text.split())


def _timestamp(scope, header, paths):
    """(DA, TM) of an HL7 time stamp YYYYMMDD[HHMM[SS[.S]]][+ZZZZ]; ("", "") when none."""
    for path in paths:
        text = raw(scope, path, header)
        if path.component and not path.subcomponent:
            text = text.split(header.subcomponent)[0]
        elif not path.component:
            text = text.split(header.component)[0].split(header.subcomponent)[0]
        digits = DIGITS.match(unescape(text, header).strip())
        if digits and len(digits.group()) >= 8:
            value = digits.group()
            return value[:8], value[8:14].ljust(6, "0") if len(value) > 8 else ""
    return "", ""


def _date(text, header):
    digits = DIGITS.match(unescape(text, header).split(header.component)[0].strip())
    return digits.group()[:8] if digits and len(digits.group()) >= 8 else ""
