"""Metadata and attachments of resources, with revisions (DESIGN §3).

Each write of a metadata value or an attachment increments its revision. A write
or delete that names the revision it expects (HTTP If-Match) is applied with a
conditional UPDATE ... WHERE revision = expected, so of two clients that read
revision 3, exactly one writes revision 4 and the other gets StaleRevision.
"""

import re
from dataclasses import dataclass

import pydicom
import pydicom.datadict
from django.conf import settings
from django.db import connection
from django.utils import timezone

from archive.errors import (  # noqa: F401 (raised here, caught by name)
    InvalidName, ReadOnlyItem, StaleRevision, UnknownItem, UnknownResource, UnsyncedCommit,
)
from archive import resources
from archive.models import Attachment, Change, ChangeType, Level, Metadata
from archive.storage import get_storage, intact
from archive import db

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Orthanc's instance metadata that the archive sets itself: read-only.
SYSTEM_METADATA = ("ReceptionDate", "RemoteAET", "RemoteIP", "CalledAET", "HttpUsername", "Origin", "TransferSyntax",
                   "SopClassUid", "IndexInSeries", "MainDicomTagsSignature", "PixelDataOffset", "LastUpdate")
PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010), little and big endian


@dataclass(frozen=True)
class Item:
    value: str
    revision: int


def system_metadata(level, row):
    """The metadata Orthanc keeps for a resource, from its row (and, for PixelDataOffset,
    from the header of an instance's file)."""
    if level == resources.Level.SERIES:
        # Orthanc (since 1.9) keeps on a series the RemoteAET of the instance that created it.
        first = row.instances.order_by("pk").values_list("remote_aet", flat=True).first()
        return {"LastUpdate": resources.orthanc_time(row.last_update), "RemoteAET": first or ""}
    if level != resources.Level.INSTANCE:
        return {"LastUpdate": resources.orthanc_time(row.last_update)}
    values = {
        "ReceptionDate": resources.orthanc_time(row.created_at),
        "Origin": row.origin,
        "TransferSyntax": row.transfer_syntax_uid,
        "SopClassUid": row.sop_class_uid,
        "RemoteIP": row.remote_ip,
        "CalledAET": row.called_aet,
        "HttpUsername": row.http_username,
    }
    if row.instance_number is not None:
        values["IndexInSeries"] = str(row.instance_number)
    values = {k: v for k, v in values.items() if v}
    # Orthanc writes RemoteAET for every instance, "" for one uploaded over HTTP.
    values["RemoteAET"] = row.remote_aet
    offset = _pixel_data_offset(row.public_id)
    if offset is not None:
        values["PixelDataOffset"] = str(offset)
    return values


def _pixel_data_offset(public_id):
    """Where the Pixel Data element starts in the stored file (Orthanc's PixelDataOffset,
    which viewers use to read frames without parsing), or None without pixel data."""
    import pydicom

    key = Attachment.objects.filter(resource_id=public_id, name=Attachment.DICOM).values_list(
        "storage_key", flat=True).first()
    if key is None:
        return None
    try:
        with get_storage().open(key) as stream:
            pydicom.dcmread(stream, stop_before_pixels=True)
            offset = stream.tell()
            return offset if stream.read(4) in PIXEL_DATA_TAGS else None
    except Exception:  # a file pydicom stored but cannot re-read here still has its other metadata
        return None


def _resource(level, public_id):
    row = resources.MODELS[level].objects.filter(public_id=public_id).first()
    if row is None:
        raise UnknownResource(public_id)
    return row


def list_metadata(level, public_id):
    row = _resource(level, public_id)
    values = {name: Item(value, 0) for name, value in system_metadata(level, row).items()}
    for name, value, revision in Metadata.objects.filter(resource_id=public_id).values_list("name", "value", "revision"):
        values[name] = Item(value, revision)
    return values


def get_metadata(level, public_id, name):
    values = list_metadata(level, public_id)
    if name not in values:
        raise UnknownItem(name)
    return values[name]


def set_metadata(level, public_id, name, value, expected_revision=None):
    """Write a user metadata value; return its new revision."""
    _check_name(name)
    return db.run(_set_metadata, level, public_id, name, value, expected_revision)


def _set_metadata(level, public_id, name, value, expected_revision):
    _resource(level, public_id)
    rows = Metadata.objects.filter(resource_id=public_id, name=name)
    if expected_revision is not None:
        updated = rows.filter(revision=expected_revision).update(value=value, revision=expected_revision + 1)
        if updated != 1:
            raise UnknownItem(name) if not rows.exists() else StaleRevision(name)
        revision = expected_revision + 1
    else:
        current = rows.values_list("revision", flat=True).first()
        if current is None:
            _insert_or_retry(Metadata, level=level, resource_id=public_id, name=name, value=value, revision=1)
            revision = 1
        else:
            if rows.filter(revision=current).update(value=value, revision=current + 1) != 1:
                raise db.Retry(f"metadata {name} changed under us")
            revision = current + 1
    _log(ChangeType.UPDATED_METADATA, level, public_id)
    return revision


def delete_metadata(level, public_id, name, expected_revision=None):
    _check_name(name)
    db.run(_delete_item, Metadata, level, public_id, name, expected_revision, ChangeType.UPDATED_METADATA)


def _delete_item(model, level, public_id, name, expected_revision, change):
    _resource(level, public_id)
    rows = model.objects.filter(resource_id=public_id, name=name)
    found = rows.values_list("revision", flat=True).first()
    if found is None:
        raise UnknownItem(name)
    if expected_revision is not None and found != expected_revision:
        raise StaleRevision(name)
    key = rows.values_list("storage_key", flat=True).first() if model is Attachment else None
    if rows.filter(revision=found).delete()[0] == 0:
        raise db.Retry(f"{name} changed under us")
    _log(change, level, public_id)
    return key


# --- attachments -----------------------------------------------------------


def list_attachments(level, public_id):
    _resource(level, public_id)
    return {a["name"]: a for a in Attachment.objects.filter(resource_id=public_id).values("name", "size", "md5", "revision", "storage_key")}


def get_attachment(level, public_id, name):
    attachments = list_attachments(level, public_id)
    if name not in attachments:
        raise UnknownItem(name)
    return attachments[name]


def attachment_intact(item):
    """Whether the stored file of an attachment (as get_attachment gives it) still has its MD5."""
    return intact(get_storage(), item["storage_key"], item["md5"])


def set_attachment(level, public_id, name, stream, expected_revision=None):
    """Store the bytes as the named attachment; return its new revision."""
    _check_name(name)
    if name == Attachment.DICOM:
        raise ReadOnlyItem("the DICOM file of an instance cannot be replaced")
    storage = get_storage()
    stored = storage.put(stream)
    try:
        revision, old_key = db.run(_set_attachment, level, public_id, name, stored, expected_revision)
    except UnsyncedCommit:
        raise  # committed: the index names the file
    except BaseException:
        storage.delete(stored.key)
        raise
    if old_key:
        storage.delete(old_key)
    return revision


def _set_attachment(level, public_id, name, stored, expected_revision):
    _resource(level, public_id)
    rows = Attachment.objects.filter(resource_id=public_id, name=name)
    current = rows.values("revision", "storage_key").first()
    if current is None:
        if expected_revision is not None:
            raise UnknownItem(name)
        _insert_or_retry(Attachment, level=level, resource_id=public_id, name=name, storage_key=stored.key,
                         size=stored.size, md5=stored.md5, revision=1)
        revision, old_key = 1, None
    else:
        if expected_revision is not None and current["revision"] != expected_revision:
            raise StaleRevision(name)
        revision = current["revision"] + 1
        if rows.filter(revision=current["revision"]).update(
                storage_key=stored.key, size=stored.size, md5=stored.md5, revision=revision) != 1:
            if expected_revision is not None:
                raise StaleRevision(name)
            raise db.Retry(f"attachment {name} changed under us")
        old_key = current["storage_key"]
    _log(ChangeType.UPDATED_ATTACHMENT, level, public_id)
    return revision, old_key


def delete_attachment(level, public_id, name, expected_revision=None):
    _check_name(name)
    if name == Attachment.DICOM:
        raise ReadOnlyItem("the DICOM file is deleted with its instance")
    key = db.run(_delete_item, Attachment, level, public_id, name, expected_revision, ChangeType.UPDATED_ATTACHMENT)
    if key:
        get_storage().delete(key)


def _check_name(name):
    if not NAME.match(name):
        raise InvalidName(f"{name!r}: names have 1 to 64 letters, digits, '_', '-' or '.'")
    if name in SYSTEM_METADATA:
        raise ReadOnlyItem(f"{name} is set by the archive and cannot be changed")


def _insert_or_retry(model, **values):
    # Two first writers of the same name: one row is kept, the other writer
    # replays and then finds a row to update.
    with connection.cursor() as cursor:
        if db.insert_unless_exists(cursor, model, "resource_id, name", **values) is None:
            raise db.Retry(f"{values['name']} created concurrently")


def _log(change, level, public_id):
    Change.objects.create(change_type=change, level=level, public_id=public_id, node=settings.NODE_NAME,
                          date=timezone.now())


def set_protected(public_id, protected):
    """Protect a patient against recycling, or lift it (Orthanc's /patients/{id}/protected)."""
    if not resources.MODELS[resources.Level.PATIENT].objects.filter(public_id=public_id).update(is_protected=protected):
        raise UnknownResource(public_id)


# --- the tags of a stored instance, for people ----------------------------------

# Values longer than this are not shown (Orthanc's MaximumStringLength default).
SHOWN_LENGTH = 256
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}


def tag_tree(public_id):
    """Every element of the instance's stored file, in file order, as people read it:
    [{"tag": "0010,0010", "vr": "PN", "name": "Patient's Name", "keyword": "PatientName",
    "value": "DOE^JOHN", "items": None}], a sequence's "items" a list of such lists.
    Pixel data and other bulk values are not read (value None, "length" given)."""
    item = get_attachment(Level.INSTANCE, public_id, Attachment.DICOM)
    with get_storage().open(item["storage_key"]) as stream:
        dataset = pydicom.dcmread(stream, defer_size=SHOWN_LENGTH * 4)
        meta = _elements(dataset.file_meta) if getattr(dataset, "file_meta", None) else []
        return meta + _elements(dataset)


def _elements(dataset):
    found = []
    for tag in dataset.keys():
        raw = dataset.get_item(tag)
        vr = getattr(raw, "VR", None) or _dictionary_vr(tag)
        if (vr in BINARY_VRS or tag == 0x7FE00010) and hasattr(raw, "length"):
            # Still raw: its value (pixel data, deferred) is never read to be shown.
            found.append({"tag": f"{tag.group:04X},{tag.element:04X}", "vr": vr, "name": _name(tag),
                          "keyword": pydicom.datadict.keyword_for_tag(tag), "value": None, "items": None,
                          "length": raw.length})
            continue
        element = dataset[tag]
        entry = {"tag": f"{tag.group:04X},{tag.element:04X}", "vr": element.VR,
                 "name": element.name, "keyword": element.keyword, "value": None, "items": None}
        if element.VR == "SQ":
            entry["items"] = [_elements(child) for child in element.value]
        elif element.VR in BINARY_VRS or tag == 0x7FE00010:
            entry["length"] = len(element.value or b"")
        else:
            text = _shown(element.value)
            if len(text) > SHOWN_LENGTH:
                entry["length"] = len(text)
            else:
                entry["value"] = text
        found.append(entry)
    return found


def _dictionary_vr(tag):
    try:
        return pydicom.datadict.dictionary_VR(tag)
    except KeyError:
        return "UN"


def _name(tag):
    try:
        return pydicom.datadict.dictionary_description(tag)
    except KeyError:
        return "Unknown tag"


def _shown(value):
    if value is None:
        return ""
    if type(value).__name__ == "MultiValue" or isinstance(value, list):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\0 ")
    return str(value)
