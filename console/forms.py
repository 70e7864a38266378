"""The console's forms: searches, modalities, peers, sends."""

import re

from django import forms
from django.db import IntegrityError

from archive.models import Series
from archive.modalities import OPERATIONS, InvalidModality, InvalidPeer, parse_modality, parse_peer
from archive.models import Modality, Peer

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
WILDCARDS = ("*", "?")


def _has_wildcard(text):
    return any(w in text for w in WILDCARDS)


class DateInput(forms.DateInput):
    input_type = "date"


class StudySearchForm(forms.Form):
    patient_name = forms.CharField(required=False, max_length=64, label="Patient name")
    patient_id = forms.CharField(required=False, max_length=64, label="Patient ID")
    accession = forms.CharField(required=False, max_length=64, label="Accession number")
    date_from = forms.DateField(required=False, label="Study date from", widget=DateInput)
    date_to = forms.DateField(required=False, label="Study date to", widget=DateInput)
    modality = forms.CharField(required=False, max_length=16, label="Modality", widget=forms.Select)
    description = forms.CharField(required=False, max_length=64, label="Description")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        present = sorted(m for m in Series.objects.order_by().values_list("modality", flat=True).distinct() if m)
        asked = (self.data.get("modality") or "").strip().upper()
        if asked and asked not in present:  # no longer in the archive (an old link): shown, matches nothing
            present.append(asked)
        self.fields["modality"].widget.choices = [("", "Any")] + [(m, m) for m in present]

    def clean_modality(self):
        return self.cleaned_data["modality"].strip().upper()

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise forms.ValidationError("The first study date is after the last one.")
        return data

    def criteria(self):
        """DICOM matching keys for archive.query, from the valid form."""
        data = self.cleaned_data
        criteria = {}
        name = data.get("patient_name", "").strip()
        if name:
            # A name without wildcards matches the names that start with it.
            criteria["PatientName"] = name if _has_wildcard(name) else name + "*"
        if data.get("patient_id", "").strip():
            criteria["PatientID"] = data["patient_id"].strip()
        if data.get("accession", "").strip():
            criteria["AccessionNumber"] = data["accession"].strip()
        low, high = data.get("date_from"), data.get("date_to")
        if low or high:
            criteria["StudyDate"] = f"{low.strftime('%Y%m%d') if low else ''}-{high.strftime('%Y%m%d') if high else ''}"
        if data.get("modality"):
            criteria["ModalitiesInStudy"] = data["modality"]
        description = data.get("description", "").strip()
        if description:
            criteria["StudyDescription"] = description if _has_wildcard(description) else f"*{description}*"
        return criteria


class PatientSearchForm(forms.Form):
    patient_name = forms.CharField(required=False, max_length=64, label="Patient name")
    patient_id = forms.CharField(required=False, max_length=64, label="Patient ID")
    birth_date = forms.DateField(required=False, label="Birth date", widget=DateInput)

    def criteria(self):
        data = self.cleaned_data
        criteria = {}
        name = data.get("patient_name", "").strip()
        if name:
            criteria["PatientName"] = name if _has_wildcard(name) else name + "*"
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
