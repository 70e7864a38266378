"""POST /tools/create-dicom: a new instance from tags, an image or a PDF, stored through
the one ingest path (Orthanc's body: Tags, Parent, Content, Force, InterpretAsJson,
PrivateCreator)."""

import base64
import binascii
import copy
import io
import uuid

from django.utils import timezone
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from archive.errors import UnknownResource  # noqa: F401 (raised here, caught by name)
from archive import editing, ingest, resources
from archive.models import Level

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
# Orthanc's code for a tag the parent already decides.
INHERITED = (2020, "Trying to override a value inherited from a parent module")
GENERATED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
# The tags a child takes from its parent, by the parent's level.
INHERITED_LEVELS = {Level.PATIENT: (Level.PATIENT,), Level.STUDY: (Level.PATIENT, Level.STUDY),
                    Level.SERIES: (Level.PATIENT, Level.STUDY, Level.SERIES)}


def create(body, origin):
    """Store the instance the body describes; ingest's StoreResult. A `Content` list makes
    a series, one instance per item (Orthanc 1.10 does not make a multi-frame image): the
    results are then a list of StoreResults, in the order of the items."""
    if not isinstance(body, dict):
        raise editing.InvalidEdit("the body must be a JSON object")
    tags = body.get("Tags", {})
    if not isinstance(tags, dict):
        raise editing.InvalidEdit('"Tags" must map tags to values', orthanc=(5, "Bad type for a parameter"))
    as_json = body.get("InterpretAsJson", False)
    force = body.get("Force", False)
    private_creator = body.get("PrivateCreator", "")
    for name, value in (("InterpretAsJson", as_json), ("Force", force)):
        if not isinstance(value, bool):
            raise editing.InvalidEdit(f'"{name}" must be true or false', orthanc=(5, "Bad type for a parameter"))

    dataset = Dataset()
    dataset.SpecificCharacterSet = "ISO_IR 192" if any(
        isinstance(v, str) and not v.isascii() for v in tags.values()) else "ISO_IR 100"
    inherited = _inherit(dataset, body.get("Parent"))
    _set_tags(dataset, tags, inherited, force, as_json, private_creator)

    now = timezone.localtime()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    for keyword in GENERATED_UIDS:
        if keyword not in dataset:
            setattr(dataset, keyword, editing.random_uid())
    if "PatientID" not in dataset:
        dataset.PatientID = str(uuid.uuid4())
    for prefix in ("Study", "Series", "Content", "Acquisition", "InstanceCreation"):
        if f"{prefix}Date" not in dataset:
            setattr(dataset, f"{prefix}Date", date)
            setattr(dataset, f"{prefix}Time", time)
    content = body.get("Content")
    if not isinstance(content, list) or not content:
        # Orthanc answers an empty list with one instance without content.
        if content is not None and not isinstance(content, list):
            _content(dataset, content)
        return _store(dataset, origin)
    items = [_item(item) for item in content]
    results = []
    for index, (item_content, item_tags) in enumerate(items):
        instance = copy.deepcopy(dataset)
        if index:
            instance.SOPInstanceUID = editing.random_uid()
        instance.InstanceNumber = instance.ImageIndex = index + 1
        instance.ImagesInAcquisition = len(items)
        instance.NumberOfTemporalPositions = 1
        _set_tags(instance, item_tags, inherited, force, as_json, private_creator)
        _content(instance, item_content)
        results.append(_store(instance, origin))
    return results


def _item(item):
    """One item of a Content list: a data URI, or {"Content": data URI, "Tags": {...}}."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and isinstance(item.get("Content"), str) and isinstance(item.get("Tags", {}), dict):
        return item["Content"], item.get("Tags", {})
    raise editing.InvalidEdit('each item of a "Content" list is a data URI or {"Content": ..., "Tags": {...}}',
                              orthanc=(5, "Bad type for a parameter"))


def _set_tags(dataset, tags, inherited, force, as_json, private_creator):
    for name, value in tags.items():
        tag = editing.parse_tag(name)
        keyword = keyword_for_tag(tag)
        if keyword in inherited or (keyword in GENERATED_UIDS and not force):
            raise editing.InvalidEdit(keyword or name, orthanc=INHERITED)
        _set(dataset, tag, value, as_json, private_creator)


def _store(dataset, origin):
    if "SOPClassUID" not in dataset:
        # Orthanc leaves it out; a file without its SOP Class UID is not a valid instance.
        dataset.SOPClassUID = SECONDARY_CAPTURE
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return ingest.store(out.getvalue(), origin)


def _inherit(dataset, parent):
    """Copy the parent's patient / study / series tags; the keywords copied."""
    if parent is None:
        return set()
    if not isinstance(parent, str):
        raise editing.InvalidEdit('"Parent" must be the id of a patient, a study or a series',
                                  orthanc=(5, "Bad type for a parameter"))
    level = editing.level_of(parent)
    if level == Level.INSTANCE:
        raise editing.InvalidEdit("the parent of a new instance is a patient, a study or a series",
                                  orthanc=(3, "Parameter out of range"))
    row = resources.get(level, parent)
    chain = {level: row}
    if level in (Level.STUDY, Level.SERIES):
        chain[Level.STUDY] = row if level == Level.STUDY else row.study
        chain[Level.PATIENT] = chain[Level.STUDY].patient
    copied = set()
    for lvl in INHERITED_LEVELS[level]:
        for keyword, value in chain[lvl].main_dicom_tags.items():
            if value not in (None, "") or keyword.endswith("UID"):
                try:
                    setattr(dataset, keyword, value)
                    copied.add(keyword)
                except (ValueError, TypeError, AttributeError):
                    continue
    dataset.PatientID = chain[Level.PATIENT].patient_id
    copied.add("PatientID")
    return copied


def _set(dataset, tag, value, as_json, private_creator):
    # A list of objects is a sequence with or without InterpretAsJson, at any depth (as Orthanc).
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        items = []
        for item_tags in value:
            item = Dataset()
            for name, item_value in item_tags.items():
                _set(item, editing.parse_tag(name), item_value, as_json, private_creator)
            items.append(item)
        dataset.add_new(tag, "SQ", items)
        return
    if isinstance(value, str) and _dictionary_vr(tag) == "SQ":
        raise editing.InvalidEdit(f"While creating a DICOM instance, tag ({tag.group:04x},{tag.element:04x}) has "
                                  f'out-of-range value: "{value}"', orthanc=(15, "Bad file format"))
    if not isinstance(value, str):
        raise editing.InvalidEdit(f"Bad Parameter type for tag {tag.group:04x},{tag.element:04x}",
                                  orthanc=(5, "Bad type for a parameter"))
    editing.set_value(dataset, Tag(tag), value, private_creator)


def _dictionary_vr(tag):
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _content(dataset, content):
    if not isinstance(content, str) or not content.startswith("data:") or ";base64," not in content:
        raise editing.InvalidEdit('"Content" must be a data URI: data:image/png;base64,... (or image/jpeg, '
                                  'application/pdf)', orthanc=(3, "Parameter out of range"))
    header, _, encoded = content.partition(";base64,")
    mime = header[len("data:"):].lower()
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise editing.InvalidEdit("the Content data URI is not valid base64", orthanc=(15, "Bad file format"))
    if mime == "application/pdf":
        if not data.startswith(b"%PDF"):
            raise editing.InvalidEdit("the Content is not a PDF document", orthanc=(15, "Bad file format"))
        dataset.SOPClassUID = ENCAPSULATED_PDF
        dataset.MIMETypeOfEncapsulatedDocument = "application/pdf"
        dataset.ConversionType = "WSD"
        if "Modality" not in dataset:
            dataset.Modality = "OT"
        dataset.EncapsulatedDocument = data + (b"\0" if len(data) % 2 else b"")
        return
    if mime not in ("image/png", "image/jpeg"):
        raise editing.InvalidEdit(f"unsupported Content type {mime}: image/png, image/jpeg or application/pdf",
                                  orthanc=(3, "Parameter out of range"))
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 (loaded by the requests that need it)

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise editing.InvalidEdit(f"the Content image cannot be decoded: {error}", orthanc=(15, "Bad file format"))
    if image.mode in ("I;16", "I;16B", "I"):
        image = image.convert("I;16")
        bits, samples, photometric = 16, 1, "MONOCHROME2"
    elif image.mode in ("L", "1"):
        image = image.convert("L")
        bits, samples, photometric = 8, 1, "MONOCHROME2"
    else:
        image = image.convert("RGB")
        bits, samples, photometric = 8, 3, "RGB"
    dataset.Rows, dataset.Columns = image.height, image.width
    dataset.SamplesPerPixel = samples
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = dataset.BitsStored = bits
    dataset.HighBit = bits - 1
    dataset.PixelRepresentation = 0
    if samples == 3:
        dataset.PlanarConfiguration = 0
    pixels = image.tobytes() if bits == 8 else image.tobytes("raw", "I;16")
    dataset.PixelData = pixels + (b"\0" if len(pixels) % 2 else b"")
    dataset["PixelData"].VR = "OB" if bits == 8 else "OW"
