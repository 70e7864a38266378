"""Modification and anonymization of resources (Orthanc's /modify and /anonymize).

A request is parsed once into an Edit (with Orthanc's checks and error messages),
then applied file by file: each source instance is read, changed, and stored as a
new instance through the one ingest path. Nothing is changed in place.

UIDs are remapped by a function of a seed (the job's id) and the old UID, not by
a table built as the files come: every instance of a series gets the same new
SeriesInstanceUID, a reference inside a sequence follows the instance it names,
and a job that is run again after its worker died produces the very same files,
which the ingest path answers AlreadyStored: no duplicate.
"""

import copy
import hashlib
import io
import uuid
from dataclasses import dataclass, field

import pydicom
from django.conf import settings
from django.db import connection
from django.db.models import Q
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.tag import Tag
from pydicom.uid import UID_dictionary

from archive.errors import ArchiveError, TranscodeError, UnknownResource  # noqa: F401 (raised here, caught by name)
from archive import confidentiality, db, deletion, ingest, resources, transcode
from archive.models import Attachment, Instance, Level, Metadata, Study
from archive.storage import get_storage

PATIENT_ID, STUDY_UID, SERIES_UID, SOP_UID = (Tag(0x0010, 0x0020), Tag(0x0020, 0x000D), Tag(0x0020, 0x000E),
                                              Tag(0x0008, 0x0018))
# The identifiers the index is built on: changing them needs "Force" (Orthanc's rule).
DATABASE_KEYS = {PATIENT_ID: "PatientID", STUDY_UID: "StudyInstanceUID", SERIES_UID: "SeriesInstanceUID",
                 SOP_UID: "SOPInstanceUID"}
# The UIDs that a modification at a level renews (those of the level and below).
RENEWED = {
    Level.PATIENT: (STUDY_UID, SERIES_UID, SOP_UID),
    Level.STUDY: (STUDY_UID, SERIES_UID, SOP_UID),
    Level.SERIES: (SERIES_UID, SOP_UID),
    Level.INSTANCE: (SOP_UID,),
}
BURNED_IN = Tag(0x0028, 0x0301)
DICOM_VERSIONS = ("2008", "2017c", "2021b", "2023b")


class InvalidEdit(ArchiveError):
    """A modify or anonymize request Orthanc would refuse; the message is Orthanc's where it has one."""

    def __init__(self, message, orthanc=(8, "Bad request")):
        super().__init__(message)
        self.orthanc = orthanc


class BurnedInAnnotation(InvalidEdit):
    """An image declares burned-in annotation: anonymizing its header leaves PHI in its pixels."""


@dataclass
class Edit:
    anonymize: bool = False
    replace: dict = field(default_factory=dict)  # Tag → str
    remove: set = field(default_factory=set)
    keep: set = field(default_factory=set)
    remove_private: bool = False
    keep_source: bool = True
    force: bool = False
    private_creator: str = ""
    transcode: str = ""
    # Paths into sequences ("GGGGEEEE[0].GGGGEEEE", an index or *), canonical (see parse_path).
    replace_paths: dict = field(default_factory=dict)  # path → str or list of item dicts
    remove_paths: list = field(default_factory=list)
    keep_paths: list = field(default_factory=list)
    allow_burned_in: bool = False
    dicom_version: str = confidentiality.VERSION

    def to_json(self):
        return {"anonymize": self.anonymize, "replace": {_hex(t): v for t, v in self.replace.items()},
                "remove": [_hex(t) for t in sorted(self.remove)], "keep": [_hex(t) for t in sorted(self.keep)],
                "remove_private": self.remove_private, "keep_source": self.keep_source, "force": self.force,
                "private_creator": self.private_creator, "transcode": self.transcode,
                "allow_burned_in": self.allow_burned_in, "dicom_version": self.dicom_version,
                "replace_paths": self.replace_paths, "remove_paths": self.remove_paths,
                "keep_paths": self.keep_paths}

    @classmethod
    def from_json(cls, data):
        return cls(anonymize=data["anonymize"], replace={Tag(int(k, 16)): v for k, v in data["replace"].items()},
                   remove={Tag(int(t, 16)) for t in data["remove"]}, keep={Tag(int(t, 16)) for t in data["keep"]},
                   remove_private=data["remove_private"], keep_source=data["keep_source"], force=data["force"],
                   private_creator=data["private_creator"], transcode=data["transcode"],
                   allow_burned_in=data["allow_burned_in"], dicom_version=data["dicom_version"],
                   replace_paths=data.get("replace_paths", {}), remove_paths=data.get("remove_paths", []),
                   keep_paths=data.get("keep_paths", []))


def parse_request(body, level, anonymize, stored=None):
    """The Edit a JSON body asks for, checked as Orthanc checks it (InvalidEdit).
    `stored`: the results are stored (default: unless the level is Instance)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidEdit("the body must be a JSON object")
    edit = Edit(anonymize=anonymize)
    edit.force = _bool(body, "Force", False)
    edit.keep_source = _bool(body, "KeepSource", True)
    edit.allow_burned_in = _bool(body, "AllowBurnedInAnnotation", False)
    edit.private_creator = _string(body, "PrivateCreator", "")
    if anonymize:
        edit.remove_private = not _bool(body, "KeepPrivateTags", False)
        edit.dicom_version = _string(body, "DicomVersion", confidentiality.VERSION)
        if edit.dicom_version not in DICOM_VERSIONS:
            raise InvalidEdit(f"unknown DicomVersion {edit.dicom_version!r}: one of {', '.join(DICOM_VERSIONS)}",
                              orthanc=(3, "Parameter out of range"))
    else:
        edit.remove_private = _bool(body, "RemovePrivateTags", False)
    edit.transcode = _string(body, "Transcode", "")
    replace = body.get("Replace", {})
    if not isinstance(replace, dict):
        raise InvalidEdit('"Replace" must map tags to values', orthanc=(5, "Bad type for a parameter"))
    for name, value in replace.items():
        path = parse_path(name)
        tag = path[-1][0]
        _check_value(tag, value)
        if len(path) > 1:
            edit.replace_paths[_path_text(path)] = value
            continue
        _check_force(edit, tag, "replaced", level)
        edit.replace[tag] = value
    for option, verb, target in (("Remove", "removed", edit.remove), ("Keep", "kept", edit.keep)):
        names = body.get(option, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidEdit(f'"{option}" must be a list of tags', orthanc=(5, "Bad type for a parameter"))
        for name in names:
            path = parse_path(name)
            if len(path) > 1:
                (edit.keep_paths if option == "Keep" else edit.remove_paths).append(_path_text(path))
                continue
            tag = parse_tag(name)
            _check_force(edit, tag, verb, level)
            target.add(tag)
    if not anonymize and level == Level.PATIENT and PATIENT_ID not in edit.replace:
        raise InvalidEdit("When modifying a patient, her PatientID is required to be modified")
    if SOP_UID in edit.keep and (level != Level.INSTANCE if stored is None else stored):
        # Two stored objects under one SOP Instance UID is what the index never allows.
        raise InvalidEdit("SOPInstanceUID cannot be kept when the result is stored: the modified instance "
                          "would carry the UID of its source", orthanc=(3, "Parameter out of range"))
    return edit


def parse_tag(name):
    """A tag from a keyword ("PatientName") or hexadecimal ("0010,0010", "0010-0010", "00100010")."""
    text = name.strip()
    digits = text.replace(",", "").replace("-", "").replace("(", "").replace(")", "")
    if len(digits) == 8 and all(c in "0123456789abcdefABCDEF" for c in digits):
        return Tag(int(digits, 16))
    found = tag_for_keyword(text)
    if found is None:
        # Orthanc answers 500 "Unknown DICOM tag" here; a client's mistake is a 400.
        raise InvalidEdit(f"unknown DICOM tag {name!r}",
                          orthanc=(27, "Unknown DICOM tag"))
    return Tag(found)


def parse_path(name):
    """A tag or a path into sequences, as Orthanc 1.9.4+ reads them in Replace and Remove:
    "ReferencedImageSequence[0].ReferencedSOPInstanceUID", an index from 0 or "*" (every item).
    A list of (tag, index) steps; the last step's index is None."""
    steps = []
    parts = name.split(".") if "[" in name else [name]
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        index = None
        if part.endswith("]") and "[" in part:
            part, _, text = part[:-1].partition("[")
            if text != "*" and not text.isdigit():
                raise InvalidEdit(f"bad index [{text}] in the path {name!r}", orthanc=(3, "Parameter out of range"))
            index = text if text == "*" else int(text)
        if (index is None) != last:
            raise InvalidEdit(f"bad path {name!r}: each sequence needs an index, the last tag none",
                              orthanc=(3, "Parameter out of range"))
        steps.append((parse_tag(part), index))
    return steps


def _path_text(steps):
    return ".".join(_hex(tag) + ("" if index is None else f"[{index}]") for tag, index in steps)


def _check_value(tag, value):
    """A replacing value: a string, or for a sequence a list of items (objects of tags to values)."""
    if isinstance(value, str):
        return
    if isinstance(value, list) and all(isinstance(item, dict) for item in value) and \
            _is_sequence(tag):
        for item in value:
            for name, inner in item.items():
                _check_value(parse_tag(name), inner)
        return
    raise InvalidEdit(f"Bad Parameter type for tag {tag.group:04x},{tag.element:04x}",
                      orthanc=(5, "Bad type for a parameter"))


def _is_sequence(tag):
    """A sequence in the data dictionary (a private tag may be one: its VR is not known here)."""
    if tag.is_private:
        return True
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


def _check_force(edit, tag, verb, level):
    if tag in DATABASE_KEYS and not edit.force:
        raise InvalidEdit(f'Marking tag "{DATABASE_KEYS[tag]}" as to be {verb} requires the "Force" option '
                          f'to be set to true')


def _bool(body, name, default):
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise InvalidEdit(f'"{name}" must be true or false', orthanc=(5, "Bad type for a parameter"))
    return value


def _string(body, name, default):
    value = body.get(name, default)
    if not isinstance(value, str):
        raise InvalidEdit(f'"{name}" must be a string', orthanc=(5, "Bad type for a parameter"))
    return value


def _hex(tag):
    return f"{int(tag):08X}"


# --- what a request covers ---------------------------------------------------


def source_instances(level, public_id):
    """The public ids of the instances under the resource, in a stable order."""
    model = resources.MODELS[level]
    row = model.objects.filter(public_id=public_id).first()
    if row is None:
        raise UnknownResource(public_id)
    if level == Level.INSTANCE:
        return [public_id]
    return list(Instance.objects.filter(**{resources.BY_ANCESTOR[Level.INSTANCE][level]: row.pk})
                .order_by("pk").values_list("public_id", flat=True))


def check_transcode(edit, instance_ids, level=None):
    """Refuse, before anything is written, a `Transcode` the transcoder cannot do for every
    stored syntax of the sources. Naming a lossy syntax is asking for loss (as in Orthanc).
    Orthanc's errors: an unknown UID is "Parameter out of range" for one instance and
    "Bad file format" for a job (Orthanc 1.10.1 checks it in two places)."""
    if not edit.transcode:
        return
    target = edit.transcode
    if UID_dictionary.get(target, ("", ""))[1] != "Transfer Syntax":
        if level == Level.INSTANCE:
            raise InvalidEdit(f"Unknown transfer syntax: {target}", orthanc=(3, "Parameter out of range"))
        raise InvalidEdit(f"Unknown transfer syntax UID: {target}", orthanc=(15, "Bad file format"))
    stored = set(Instance.objects.filter(public_id__in=instance_ids).values_list("transfer_syntax_uid", flat=True))
    for source in sorted(stored):
        try:
            transcode.check(source, target, lossy=True)
        except TranscodeError as error:
            raise InvalidEdit(f"Cannot transcode to transfer syntax: {target} ({error})",
                              orthanc=(3, "Parameter out of range"))


def source_uids(level, public_id, edit):
    """The UIDs a modification renews wherever they appear (references in sequences
    too): those of the resource's level and below, less the ones kept or replaced."""
    row = resources.MODELS[level].objects.get(public_id=public_id)
    instances = Instance.objects.filter(pk=row.pk) if level == Level.INSTANCE else \
        Instance.objects.filter(**{resources.BY_ANCESTOR[Level.INSTANCE][level]: row.pk})
    renewed = [t for t in RENEWED[level] if t not in edit.keep and t not in edit.replace]
    columns = {SOP_UID: "sop_instance_uid", SERIES_UID: "series__series_instance_uid",
               STUDY_UID: "series__study__study_instance_uid"}
    uids = set()
    for values in instances.values_list(*[columns[t] for t in renewed]):
        uids.update(values)
    return sorted(uids)


# --- split, merge, bulk ----------------------------------------------------------


@dataclass
class Plan:
    """A job's work fixed at submission: the edit, the source instances, the level whose
    UIDs are renewed, the UIDs renewed wherever they appear, the target study if any."""

    edit: Edit
    instances: list
    level: str
    remapped: list
    target: dict | None = None


def random_uid():
    return "2.25." + str(uuid.uuid4().int)


def plan_split(study_id, body):
    """POST /studies/{id}/split: the series and instances named go to a new study."""
    study = _study(study_id)
    body = body if isinstance(body, dict) else {}
    series, instances = body.get("Series"), body.get("Instances")
    if series is None and instances is None:
        raise InvalidEdit('Both the "Series" and the "Instances" fields are missing')
    for name, value in (("Series", series), ("Instances", instances)):
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise InvalidEdit(f"List of strings expected in field: {name}", orthanc=(15, "Bad file format"))
    chosen = Instance.objects.filter(series__study=study)
    wanted = Q(series__public_id__in=series or []) | Q(public_id__in=instances or [])
    ids = list(chosen.filter(wanted).order_by("pk").values_list("public_id", flat=True))
    known = set(Instance.objects.filter(series__study=study, series__public_id__in=series or []).values_list(
        "series__public_id", flat=True)) | set(ids)
    for public_id in (series or []) + (instances or []):
        if public_id not in known:
            raise InvalidEdit(f"{public_id} is not a series or an instance of study {study_id}",
                              orthanc=(17, "Unknown resource"))
    edit = parse_request({"Replace": body.get("Replace", {}), "Remove": body.get("Remove", []),
                          "KeepSource": body.get("KeepSource", False)}, Level.STUDY, False)
    target_uid = random_uid()
    edit.replace[STUDY_UID] = target_uid
    return Plan(edit, ids, Level.STUDY, _uids_of(ids), {"UID": target_uid})


def plan_merge(study_id, body):
    """POST /studies/{id}/merge: the studies, series and instances named join this study,
    taking its patient and study attributes."""
    target = _study(study_id)
    names = body.get("Resources") if isinstance(body, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidEdit("List of strings expected in field: Resources", orthanc=(15, "Bad file format"))
    ids = []
    for public_id in names:
        level = level_of(public_id)
        if level == Level.PATIENT:
            raise InvalidEdit(f"{public_id} is a patient: merge takes studies, series and instances",
                              orthanc=(3, "Parameter out of range"))
        ids += [i for i in source_instances(level, public_id) if i not in ids]
    ids = [i for i in ids if not Instance.objects.filter(public_id=i, series__study=target).exists()]
    keep_source = body.get("KeepSource", False)
    edit = parse_request({"KeepSource": keep_source}, Level.STUDY, False)
    for keyword, value in {**target.patient.main_dicom_tags, **target.main_dicom_tags}.items():
        if value is not None and tag_for_keyword(keyword) is not None:
            edit.replace[Tag(tag_for_keyword(keyword))] = str(value)
    edit.replace[PATIENT_ID] = target.patient.patient_id
    edit.replace[STUDY_UID] = target.study_instance_uid
    return Plan(edit, ids, Level.STUDY, _uids_of(ids), {"ID": study_id, "UID": target.study_instance_uid})


def plan_bulk(body, anonymize):
    """/tools/bulk-modify and bulk-anonymize: every instance of the resources, edited at
    "Level" (by default each instance on its own, as Orthanc)."""
    if not isinstance(body, dict):
        raise InvalidEdit("the body must be a JSON object")
    names = body.get("Resources")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidEdit("List of strings expected in field: Resources", orthanc=(15, "Bad file format"))
    level = body.get("Level", Level.INSTANCE)
    levels = {lvl.lower(): lvl for lvl in resources.ORDER}
    if not isinstance(level, str) or level.lower() not in levels:
        raise InvalidEdit("Level must be Patient, Study, Series or Instance", orthanc=(3, "Parameter out of range"))
    level = levels[level.lower()]
    options = {k: v for k, v in body.items() if k not in ("Resources", "Level")}
    edit = parse_request(options, level, anonymize, stored=True)
    ids = []
    for public_id in names:
        ids += [i for i in source_instances(level_of(public_id), public_id) if i not in ids]
    remapped = [] if anonymize else _uids_of(ids, RENEWED[level], edit)
    return Plan(edit, ids, level, remapped)


def _study(public_id):
    row = Study.objects.select_related("patient").filter(public_id=public_id).first()
    if row is None:
        raise UnknownResource(public_id)
    return row


def level_of(public_id):
    for level in resources.ORDER:
        if resources.MODELS[level].objects.filter(public_id=public_id).exists():
            return level
    raise UnknownResource(public_id)


def _uids_of(instance_ids, tags=(SERIES_UID, SOP_UID), edit=None):
    columns = {SOP_UID: "sop_instance_uid", SERIES_UID: "series__series_instance_uid",
               STUDY_UID: "series__study__study_instance_uid"}
    tags = [t for t in tags if edit is None or (t not in edit.keep and t not in edit.replace)]
    if not tags:
        return []
    uids = set()
    for values in Instance.objects.filter(public_id__in=instance_ids).values_list(*[columns[t] for t in tags]):
        uids.update(values)
    return sorted(uids)


# --- changing one file ---------------------------------------------------------


def new_uid(seed, old):
    """The UID that replaces `old` in the edit identified by `seed`: the same for the same
    pair, different for another seed (2.25: a UID from a UUID's integer, PS3.5 B.2)."""
    digest = hashlib.sha256(f"{seed}|{old}".encode()).digest()[:16]
    return "2.25." + str(uuid.UUID(bytes=digest).int)


def anonymous_patient(seed, original_patient_id):
    """The generated PatientID and PatientName replacing one patient's in one anonymization:
    the studies of one patient anonymized together stay together, two patients stay two."""
    digest = hashlib.sha256(f"{seed}|patient|{original_patient_id}".encode()).digest()[:16]
    identifier = str(uuid.UUID(bytes=digest))
    return identifier, f"Anonymized{identifier[:8].upper()}"


def apply(data, edit, seed, level, remapped=frozenset()):
    """The bytes of the edited file. `remapped`: for a modification, the UIDs to renew
    wherever they appear (an anonymization renews every UID that is not the standard's)."""
    dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    # Values kept inside sequences, put back after the profile and the UID remapping.
    kept = [(text, index, copy.deepcopy(item[tag])) for text in edit.keep_paths
            for index, (item, tag) in enumerate(_path_places(dataset, text)) if item is not None and tag in item]
    burned_in = dataset.get(BURNED_IN)
    if edit.anonymize and not edit.allow_burned_in and burned_in is not None and \
            str(burned_in.value).strip().upper() == "YES":
        raise BurnedInAnnotation(
            "the image declares BurnedInAnnotation YES: its pixels may show identifying text that anonymizing "
            "the header does not remove; refused (send \"AllowBurnedInAnnotation\": true to anonymize the header "
            "anyway, the flag stays in the result)")
    if edit.anonymize:
        _anonymize(dataset, edit, seed)
    else:
        if edit.remove_private:
            _remove_private(dataset, edit.keep)
        targets = set(remapped) | {str(dataset[t].value) for t in RENEWED[level]
                                   if t in dataset and t not in edit.keep and t not in edit.replace}
        _remap_uids(dataset, lambda old: new_uid(seed, old) if old in targets else old, edit.keep)
    for tag in edit.remove:
        if tag in dataset:
            del dataset[tag]
    for tag, value in edit.replace.items():
        set_value(dataset, tag, value, edit.private_creator)
    restored = {}
    for text, index, element in kept:
        places = restored.setdefault(text, list(_path_places(dataset, text)))
        if index < len(places) and places[index][0] is not None:
            places[index][0][element.tag] = element
    for text in edit.remove_paths:
        items, tag = _path_items(dataset, text)
        for item in items:
            if tag in item:
                del item[tag]
    for text, value in edit.replace_paths.items():
        # As Orthanc: a path through an item that does not exist changes nothing.
        items, tag = _path_items(dataset, text)
        for item in items:
            set_value(item, tag, value, edit.private_creator)
    if getattr(dataset, "file_meta", None) is not None and SOP_UID in dataset:
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset[SOP_UID].value
    out = io.BytesIO()
    if edit.transcode and edit.transcode != dataset.file_meta.get("TransferSyntaxUID"):
        # The transcoder reads a Part 10 file: give it a preamble when the source had none.
        if dataset.preamble is None:
            dataset.preamble = b"\0" * 128
        dataset.save_as(out, enforce_file_format=False)
        try:
            return transcode.transcoded_bytes(io.BytesIO(out.getvalue()), edit.transcode, lossy=True)
        except TranscodeError as error:
            raise InvalidEdit(f"Cannot transcode to transfer syntax: {edit.transcode} ({error})",
                              orthanc=(3, "Parameter out of range"))
    dataset.save_as(out, enforce_file_format=False)
    return out.getvalue()


def _anonymize(dataset, edit, seed):
    patient_id, patient_name = anonymous_patient(seed, str(dataset.get("PatientID", "")))
    if edit.remove_private:
        _remove_private(dataset, edit.keep)
    _profile(dataset, edit.keep)
    _remap_uids(dataset, lambda old: old if old in UID_dictionary else new_uid(seed, old), edit.keep)
    for keyword, value in (("PatientID", patient_id), ("PatientName", patient_name)):
        if Tag(tag_for_keyword(keyword)) not in edit.keep:
            dataset.add_new(tag_for_keyword(keyword), dictionary_VR(keyword), value)
    dataset.PatientIdentityRemoved = "YES"
    if not (edit.replace or edit.keep or edit.keep_paths or edit.remove or edit.remove_paths
            or edit.replace_paths or not edit.remove_private):
        # Only the plain profile is named: a customised one is no longer that profile (as Orthanc).
        dataset.DeidentificationMethod = confidentiality.METHOD


def _profile(dataset, keep):
    """Table E.1-1 at every depth, then what no table entry catches: curves, overlays, names."""
    for element in list(dataset):
        tag = element.tag
        if tag in keep:
            continue
        keyword = keyword_for_tag(tag)
        action = confidentiality.ACTIONS.get(keyword)
        group = tag.group
        if action == "X" or (0x5000 <= group <= 0x50FF and group % 2 == 0) or \
                (0x6000 <= group <= 0x60FF and group % 2 == 0 and tag.element in (0x3000, 0x4000)):
            del dataset[tag]
        elif action == "Z" or (element.VR == "PN"):
            if element.VR == "SQ":
                element.value = []
            else:
                element.value = ""
        elif element.VR == "SQ":
            for item in element.value:
                _profile(item, keep)


def _remove_private(dataset, keep):
    for element in list(dataset):
        if element.tag.is_private and element.tag not in keep:
            del dataset[element.tag]
        elif element.VR == "SQ":
            for item in element.value:
                _remove_private(item, keep)


def _remap_uids(dataset, remap, keep):
    for element in dataset:
        if element.VR == "UI" and element.tag not in keep and element.tag.group != 0x0002 and element.value:
            if element.VM > 1:
                element.value = [remap(str(v)) for v in element.value]
            else:
                element.value = remap(str(element.value))
        elif element.VR == "SQ":
            for item in element.value:
                _remap_uids(item, remap, keep)


def _path_items(dataset, text):
    """The items a path's last tag lives in, and that tag."""
    steps = parse_path(text)
    items = [dataset]
    for tag, index in steps[:-1]:
        found = []
        for item in items:
            if tag in item and item[tag].VR == "SQ":
                sequence = item[tag].value
                found.extend(sequence if index == "*" else sequence[index:index + 1])
        items = found
    return items, steps[-1][0]


def _path_places(dataset, text):
    """(item, tag) for every concrete place a path names, in order; item None where the
    place no longer exists (an item the profile removed), so indices line up with before."""
    steps = parse_path(text)

    def walk(item, depth):
        tag, index = steps[depth]
        if depth == len(steps) - 1:
            yield item, tag
            return
        sequence = item[tag].value if item is not None and tag in item and item[tag].VR == "SQ" else []
        for position in (range(len(sequence)) if index == "*" else [index]):
            yield from walk(sequence[position] if position < len(sequence) else None, depth + 1)

    yield from walk(dataset, 0)


def set_value(dataset, tag, value, private_creator):
    if isinstance(value, list):
        items = []
        for item_tags in value:
            item = pydicom.Dataset()
            for name, inner in item_tags.items():
                set_value(item, parse_tag(name), inner, private_creator)
            items.append(item)
        if tag in dataset:
            del dataset[tag]
        dataset.add_new(tag, "SQ", pydicom.Sequence(items))
        return
    if tag in dataset:
        element = dataset[tag]
        element.value = value
        return
    if tag.is_private:
        if not private_creator:
            raise InvalidEdit(f"a private tag ({tag.group:04x},{tag.element:04x}) can only be added with "
                              f'"PrivateCreator"', orthanc=(3, "Parameter out of range"))
        creator = Tag(tag.group, tag.element >> 8)
        if creator not in dataset:
            dataset.add_new(creator, "LO", private_creator)
        dataset.add_new(tag, "UN", value.encode())
        return
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        vr = "UN"
    dataset.add_new(tag, vr.split(" or ")[0], value)


# --- storing the result --------------------------------------------------------


@dataclass
class Outcome:
    """What one edited instance became: its new ids at every level, from the store."""

    instance: str
    series: str
    study: str
    patient: str


def read_source(instance_id):
    key = Attachment.objects.filter(resource_id=instance_id, name=Attachment.DICOM).values_list(
        "storage_key", flat=True).first()
    if key is None:
        raise UnknownResource(instance_id)
    with get_storage().open(key) as stream:
        return stream.read()


def edit_and_store(instance_id, edit, seed, level, remapped, origin, ancestors):
    """Edit one source instance and store the result; its Outcome. Storing twice is
    harmless: the same seed gives the same UIDs, and the second store is AlreadyStored.
    `ancestors`: the source ids of the instance's series, study and patient."""
    data = apply(read_source(instance_id), edit, seed, level, remapped)
    result = ingest.store(data, origin)
    outcome = Outcome(result.instance_id, result.series_id, result.study_id, result.patient_id)
    name = "AnonymizedFrom" if edit.anonymize else "ModifiedFrom"
    pairs = [(Level.INSTANCE, outcome.instance, instance_id)]
    if level != Level.INSTANCE:
        pairs.append((Level.SERIES, outcome.series, ancestors[Level.SERIES]))
    if level in (Level.STUDY, Level.PATIENT):
        pairs.append((Level.STUDY, outcome.study, ancestors[Level.STUDY]))
    if level == Level.PATIENT:
        pairs.append((Level.PATIENT, outcome.patient, ancestors[Level.PATIENT]))
    db.run(_mark_origins, name, pairs)
    return outcome


def _mark_origins(name, pairs):
    with connection.cursor() as cursor:
        for level, target, source in pairs:
            if target != source:
                db.insert_unless_exists(cursor, Metadata, "resource_id, name", level=level, resource_id=target,
                                        name=name, value=source, revision=1)


def ancestors_of(instance_ids):
    """{instance id: {level: ancestor public id}} in one query."""
    rows = Instance.objects.filter(public_id__in=instance_ids).values_list(
        "public_id", "series__public_id", "series__study__public_id", "series__study__patient__public_id")
    return {i: {Level.SERIES: s, Level.STUDY: st, Level.PATIENT: p} for i, s, st, p in rows}


def remove_sources(instance_ids):
    """KeepSource false: delete the source instances (not the resource: a study whose UID
    was kept holds the new instances too; a result never has a source's id, because its
    SOP Instance UID is always new). Idempotent for a replayed job."""
    for instance_id in instance_ids:
        try:
            deletion.delete_resource(Level.INSTANCE, instance_id)
        except UnknownResource:
            pass


def answer(level, outcome, anonymize, count, failed=0, transcode=""):
    """Orthanc's answer to a modification or anonymization of a resource (with the
    syntax asked for when it transcoded, as Orthanc 1.10 adds it)."""
    new_id = {Level.PATIENT: outcome.patient, Level.STUDY: outcome.study, Level.SERIES: outcome.series,
              Level.INSTANCE: outcome.instance}[level]
    content = {"Description": "REST API", "FailedInstancesCount": failed, "ID": new_id, "InstancesCount": count,
               "IsAnonymization": anonymize, "Path": f"/{resources.PLURAL[level]}/{new_id}",
               "PatientID": outcome.patient, "Type": level}
    if transcode:
        content["Transcode"] = transcode
    return content


def node_origin(username):
    return ingest.Origin(kind="RestApi", remote_ip="", username=username or settings.NODE_NAME)
