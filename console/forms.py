"""The console's forms: searches, modalities, peers, sends, worklist items."""

import datetime
import re
import uuid

from django import forms
from django.db import IntegrityError
from django.utils import timezone

from archive import query, worklist
from archive.models import Series, WorklistItem
from archive.modalities import OPERATIONS, InvalidModality, InvalidPeer, parse_modality, parse_peer
from archive.models import Modality, Peer

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
WILDCARDS = ("*", "?")


def _has_wildcard(text):
    return any(w in text for w in WILDCARDS)


def typed_name(text):
    """A name box's words as people type them ("Doe, John", "john doe", "müller"), each
    the start of a word of the name; with a wildcard, a DICOM matching string."""
    return text if _has_wildcard(text) else query.Typed(text)


# Quick date ranges of the study search: key → (label, days back to the first day, to the last day).
PERIODS = {"today": ("Today", 0, 0), "yesterday": ("Yesterday", 1, 1), "7d": ("Last 7 days", 6, 0),
           "30d": ("Last 30 days", 29, 0)}


class DateInput(forms.DateInput):
    input_type = "date"


class TimeInput(forms.TimeInput):
    input_type = "time"


class StudyDateRange(forms.Form):
    """A search with a study date range (date_from, date_to) that must not run backwards."""

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The first study date is after the last one.")
        return data


class StudySearchForm(StudyDateRange):
    patient_name = forms.CharField(required=False, max_length=64, label="Patient name")
    patient_id = forms.CharField(required=False, max_length=64, label="Patient ID")
    accession = forms.CharField(required=False, max_length=64, label="Accession number")
    period = forms.ChoiceField(required=False, label="Study date", initial="",
                               choices=[("", "Any time")] + [(k, v[0]) for k, v in PERIODS.items()])
    date_from = forms.DateField(required=False, label="Study date from", widget=DateInput)
    date_to = forms.DateField(required=False, label="Study date to", widget=DateInput)
    modality = forms.CharField(required=False, max_length=16, label="Modality", widget=forms.Select)
    description = forms.CharField(required=False, max_length=64, label="Description")
    label = forms.RegexField(required=False, max_length=64, label="Label", regex=r"^[A-Za-z0-9_-]*$",
                             error_messages={"invalid": "Letters, digits, “_” and “-” only."})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        present = sorted(m for m in Series.objects.order_by().values_list("modality", flat=True).distinct() if m)
        asked = (self.data.get("modality") or "").strip().upper()
        if asked and asked not in present:  # no longer in the archive (an old link): shown, matches nothing
            present.append(asked)
        self.fields["modality"].widget.choices = [("", "Any")] + [(m, m) for m in present]

    def clean_modality(self):
        return self.cleaned_data["modality"].strip().upper()


    def criteria(self):
        """DICOM matching keys for archive.query, from the valid form."""
        data = self.cleaned_data
        criteria = {}
        name = data.get("patient_name", "").strip()
        if name:
            criteria["PatientName"] = typed_name(name)
        if data.get("patient_id", "").strip():
            criteria["PatientID"] = data["patient_id"].strip()
        if data.get("accession", "").strip():
            criteria["AccessionNumber"] = data["accession"].strip()
        low, high = data.get("date_from"), data.get("date_to")
        if data.get("period") in PERIODS and not (low or high):
            _, back, until = PERIODS[data["period"]]
            today = timezone.localdate()
            low, high = today - datetime.timedelta(days=back), today - datetime.timedelta(days=until)
        if low or high:
            criteria["StudyDate"] = f"{low.strftime('%Y%m%d') if low else ''}-{high.strftime('%Y%m%d') if high else ''}"
        if data.get("modality"):
            criteria["ModalitiesInStudy"] = data["modality"]
        description = data.get("description", "").strip()
        if description:
            criteria["StudyDescription"] = description if _has_wildcard(description) else f"*{description}*"
        return criteria

    def labels(self):
        """The labels the studies must carry (the query engine's Labels, constraint All)."""
        label = self.cleaned_data.get("label", "").strip()
        return (label,) if label else ()


class PatientSearchForm(forms.Form):
    patient_name = forms.CharField(required=False, max_length=64, label="Patient name")
    patient_id = forms.CharField(required=False, max_length=64, label="Patient ID")
    birth_date = forms.DateField(required=False, label="Birth date", widget=DateInput)

    def criteria(self):
        data = self.cleaned_data
        criteria = {}
        name = data.get("patient_name", "").strip()
        if name:
            criteria["PatientName"] = typed_name(name)
        if data.get("patient_id", "").strip():
            criteria["PatientID"] = data["patient_id"].strip()
        if data.get("birth_date"):
            criteria["PatientBirthDate"] = data["birth_date"].strftime("%Y%m%d")
        return criteria


def _check_name(value):
    if not NAME.match(value):
        raise forms.ValidationError("Use 1 to 64 letters, digits, dots, dashes or underscores.")
    return value


class ModalityForm(forms.Form):
    """A modality, validated by archive.modalities.parse_modality (the REST route's rules)."""

    name = forms.CharField(max_length=64, help_text="A short name for this node, e.g. ct1.")
    aet = forms.CharField(max_length=16, label="AE title")
    host = forms.CharField(max_length=255, help_text="Host name or IP address.")
    port = forms.IntegerField(min_value=1, max_value=65535, initial=104)
    manufacturer = forms.CharField(max_length=32, initial="Generic", required=False)
    local_aet = forms.CharField(max_length=16, required=False, label="Our AE title",
                                help_text="The calling AE title we present; empty: the archive's own.")
    timeout = forms.IntegerField(min_value=0, initial=0, required=False, label="Timeout (s)",
                                 help_text="0 uses the default.")
    allow_echo = forms.BooleanField(required=False, initial=True, label="Echo")
    allow_find = forms.BooleanField(required=False, initial=True, label="Find")
    allow_move = forms.BooleanField(required=False, initial=True, label="Move")
    allow_get = forms.BooleanField(required=False, initial=True, label="Get")
    allow_store = forms.BooleanField(required=False, initial=True, label="Store")

    def __init__(self, *args, instance=None, **kwargs):
        self.instance = instance
        if instance is not None:
            kwargs.setdefault("initial", {f: getattr(instance, f) for f in self.base_fields})
        super().__init__(*args, **kwargs)
        if instance is not None:
            self.fields["name"].disabled = True

    def clean_name(self):
        name = _check_name(self.cleaned_data["name"].strip())
        if self.instance is None and Modality.objects.filter(name=name).exists():
            raise forms.ValidationError(f"A modality named {name} exists already.")
        return name

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        value = {"AET": data["aet"], "Host": data["host"], "Port": data["port"],
                 "Manufacturer": data.get("manufacturer") or "Generic", "LocalAet": data.get("local_aet") or "",
                 "Timeout": data.get("timeout") or 0}
        for operation in OPERATIONS:
            value[f"Allow{operation.capitalize()}"] = bool(data.get(f"allow_{operation}"))
        try:
            self.parsed = parse_modality(data["name"], value)
        except InvalidModality as error:
            raise forms.ValidationError(str(error))
        return data

    def save(self):
        fields = {f.name: getattr(self.parsed, f.name) for f in Modality._meta.fields
                  if f.name not in ("id", "name", "updated_at")}
        try:
            Modality.objects.update_or_create(name=self.parsed.name, defaults=fields)
        except IntegrityError:  # created by someone else in the meantime
            Modality.objects.filter(name=self.parsed.name).update(**fields)


class PeerForm(forms.Form):
    """An Orthanc-compatible peer, validated by the REST route's rules."""

    name = forms.CharField(max_length=64, help_text="A short name for this peer, e.g. site-b.")
    url = forms.CharField(max_length=500, label="URL", help_text="http://host:port/ of the other archive.")
    username = forms.CharField(max_length=128, required=False)
    password = forms.CharField(max_length=256, required=False, widget=forms.PasswordInput(render_value=False),
                               help_text="Never shown again. On an existing peer, leave empty to keep it.")
    timeout = forms.IntegerField(min_value=0, initial=0, required=False, label="Timeout (s)",
                                 help_text="0 uses the default.")

    def __init__(self, *args, instance=None, **kwargs):
        self.instance = instance
        if instance is not None:
            kwargs.setdefault("initial", {"name": instance.name, "url": instance.url, "username": instance.username,
                                          "timeout": instance.timeout})
        super().__init__(*args, **kwargs)
        if instance is not None:
            self.fields["name"].disabled = True

    def clean_name(self):
        name = _check_name(self.cleaned_data["name"].strip())
        if self.instance is None and Peer.objects.filter(name=name).exists():
            raise forms.ValidationError(f"A peer named {name} exists already.")
        return name

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        password = data.get("password") or (self.instance.password if self.instance else "")
        body = {"Url": data["url"].strip(), "Username": data.get("username") or "", "Password": password,
                "Timeout": data.get("timeout") or 0,
                "HttpHeaders": self.instance.http_headers if self.instance else {}}
        try:
            self.parsed = parse_peer(body)
        except InvalidPeer as error:
            raise forms.ValidationError(str(error))
        return data

    def save(self):
        try:
            Peer.objects.update_or_create(name=self.cleaned_data["name"], defaults=self.parsed)
        except IntegrityError:
            Peer.objects.filter(name=self.cleaned_data["name"]).update(**self.parsed)


# --- the worklist ---------------------------------------------------------------

OPEN_STEPS, EVERY_STEP = "", "all"
# What DICOM forbids in these values: the value separator and control characters (PS3.5 6.2).
FORBIDDEN = re.compile(r"[\\\x00-\x1f\x7f]")
CODE_STRING = re.compile(r"^[A-Z0-9 _]+$")  # CS (PS3.5 6.2)


class WorklistSearchForm(forms.Form):
    """The worklist page's filters: the matching keys of a Modality Worklist query."""

    date = forms.DateField(required=False, label="Scheduled date", widget=DateInput)
    modality = forms.CharField(required=False, max_length=16, label="Modality", widget=forms.Select)
    station_aet = forms.CharField(required=False, max_length=16, label="Station AE title")
    patient_name = forms.CharField(required=False, max_length=64, label="Patient name")
    patient_id = forms.CharField(required=False, max_length=64, label="Patient ID")
    accession = forms.CharField(required=False, max_length=16, label="Accession number")
    status = forms.ChoiceField(required=False, label="Status", choices=[
        (OPEN_STEPS, "Open"), (EVERY_STEP, "Any, finished too")])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        present = sorted(m for m in WorklistItem.objects.order_by().values_list("modality", flat=True).distinct()
                         if m)
        asked = (self.data.get("modality") or "").strip().upper()
        if asked and asked not in present:
            present.append(asked)
        self.fields["modality"].widget.choices = [("", "Any")] + [(m, m) for m in present]

    def clean_modality(self):
        return self.cleaned_data["modality"].strip().upper()

    def criteria(self):
        """DICOM matching keys for archive.worklist.find, from the valid form."""
        data = self.cleaned_data
        criteria = {}
        if data.get("date"):
            criteria["ScheduledProcedureStepStartDate"] = data["date"].strftime("%Y%m%d")
        if data.get("modality"):
            criteria["Modality"] = data["modality"]
        if data.get("station_aet", "").strip():
            criteria["ScheduledStationAETitle"] = data["station_aet"].strip()
        name = data.get("patient_name", "").strip()
        if name:
            criteria["PatientName"] = typed_name(name)
        if data.get("patient_id", "").strip():
            criteria["PatientID"] = data["patient_id"].strip()
        if data.get("accession", "").strip():
            criteria["AccessionNumber"] = data["accession"].strip()
        return criteria

    def finished(self):
        """Whether cancelled, completed and discontinued steps are shown too."""
        return self.cleaned_data.get("status") == EVERY_STEP


class WorklistItemForm(forms.Form):
    """A scheduled procedure step entered by hand, as the RIS would order it."""

    patient_id = forms.CharField(max_length=64, label="Patient ID")
    patient_name = forms.CharField(max_length=64, required=False, label="Patient name",
                                   help_text="Family^Given, as DICOM writes it: DOE^JANE.")
    patient_birth_date = forms.DateField(required=False, label="Birth date", widget=DateInput)
    patient_sex = forms.ChoiceField(required=False, label="Sex",
                                    choices=[("", "Unknown"), ("F", "Female"), ("M", "Male"), ("O", "Other")])
    accession_number = forms.CharField(max_length=16, label="Accession number")
    requested_procedure_id = forms.CharField(max_length=16, required=False, label="Requested procedure ID")
    requested_procedure_description = forms.CharField(max_length=64, required=False,
                                                      label="Requested procedure")
    scheduled_step_id = forms.CharField(max_length=16, required=False, label="Scheduled step ID",
                                        help_text="Empty: one is made up.")
    scheduled_step_description = forms.CharField(max_length=64, required=False, label="Scheduled step")
    modality = forms.CharField(max_length=16, label="Modality", help_text="CT, MR, US…")
    scheduled_station_aet = forms.CharField(max_length=16, required=False, label="Station AE title",
                                            help_text="The modality that will find it. Empty: any station.")
    start_date = forms.DateField(label="Date", widget=DateInput)
    start_time = forms.TimeField(required=False, label="Time", widget=TimeInput)

    GROUPS = (
        ("Patient", ("patient_id", "patient_name", "patient_birth_date", "patient_sex")),
        ("Requested procedure", ("accession_number", "requested_procedure_id", "requested_procedure_description")),
        ("Where and when", ("modality", "scheduled_station_aet", "start_date", "start_time")),
        ("Scheduled step", ("scheduled_step_id", "scheduled_step_description")),
    )

    def fieldsets(self):
        """(legend, bound fields) of each group, in order, for the template."""
        return [(legend, [self[name] for name in names]) for legend, names in self.GROUPS]

    def clean(self):
        data = super().clean()
        for name, value in list(data.items()):
            if isinstance(value, str) and FORBIDDEN.search(value):
                self.add_error(name, "Backslashes and control characters are not allowed in DICOM values.")
        return data

    def clean_modality(self):
        modality = self.cleaned_data["modality"].strip().upper()
        if not CODE_STRING.match(modality):
            raise forms.ValidationError("Use capital letters, digits, spaces or underscores, e.g. CT.")
        return modality

    def clean_scheduled_step_id(self):
        step_id = self.cleaned_data["scheduled_step_id"]
        # An order without a placer order number is named by its step ID alone: the
        # same ID again would reschedule that item rather than add one.
        if step_id and WorklistItem.objects.filter(placer_order_number="", scheduled_step_id=step_id).exists():
            raise forms.ValidationError("A scheduled step with this ID exists already; leave it empty for a new one.")
        return step_id

    def order(self):
        """The worklist.Order of the valid form."""
        data = self.cleaned_data
        patient = worklist.Demographics(
            patient_id=data["patient_id"], patient_name=data["patient_name"],
            patient_birth_date=data["patient_birth_date"].strftime("%Y%m%d") if data["patient_birth_date"] else "",
            patient_sex=data["patient_sex"])
        return worklist.Order(
            action=worklist.NEW, patient=patient,
            # What POST /worklists does for a step without keys (worklist.order_from_dataset).
            scheduled_step_id=data["scheduled_step_id"] or uuid.uuid4().hex[:16].upper(),
            accession_number=data["accession_number"], requested_procedure_id=data["requested_procedure_id"],
            requested_procedure_description=data["requested_procedure_description"],
            scheduled_step_description=data["scheduled_step_description"], modality=data["modality"],
            scheduled_station_aet=data["scheduled_station_aet"], start_date=data["start_date"].strftime("%Y%m%d"),
            start_time=data["start_time"].strftime("%H%M%S") if data["start_time"] else "")


RETRIEVE_METHODS = (("C-GET", "C-GET (on the query's association)"), ("C-MOVE", "C-MOVE (the PACS sends to our AE)"))


class RemoteSearchForm(StudyDateRange):
    """A study-level search at another PACS (the Query/Retrieve page)."""

    source = forms.ChoiceField(label="PACS or modality", choices=())
    patient_name = forms.CharField(required=False, max_length=64, label="Patient name")
    patient_id = forms.CharField(required=False, max_length=64, label="Patient ID")
    accession = forms.CharField(required=False, max_length=64, label="Accession number")
    date_from = forms.DateField(required=False, label="Study date from", widget=DateInput)
    date_to = forms.DateField(required=False, label="Study date to", widget=DateInput)
    modality = forms.CharField(required=False, max_length=16, label="Modality")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = [(m.name, f"{m.name} · {m.aet}@{m.host}:{m.port}")
                                         for m in Modality.objects.order_by("name")]


    def criteria(self):
        """DICOM matching keys for archive.remote.find_studies; the name as typed (query.Typed)."""
        data = self.cleaned_data
        criteria = {}
        if data.get("patient_name", "").strip():
            criteria["PatientName"] = typed_name(data["patient_name"].strip())
        for field, keyword in (("patient_id", "PatientID"), ("accession", "AccessionNumber")):
            if data.get(field, "").strip():
                criteria[keyword] = data[field].strip()
        low, high = data.get("date_from"), data.get("date_to")
        if low or high:
            criteria["StudyDate"] = f"{low.strftime('%Y%m%d') if low else ''}-{high.strftime('%Y%m%d') if high else ''}"
        if data.get("modality", "").strip():
            criteria["ModalitiesInStudy"] = data["modality"].strip().upper()
        return criteria
