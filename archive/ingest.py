"""store(): the one way an instance enters the archive.

C-STORE, POST /instances, STOW-RS, retrieves and peer transfers all call it.

1. Parse the header once; refuse what cannot be indexed. Nothing is written.
2. Write the bytes to storage (atomic, fsynced): a new key, never reused.
3. Index it in one replayed unit of work: upsert patient → study → series,
   insert the instance and its attachment, append the changes.
4. When the unit finally fails, or the instance was already there, remove the
   file written in step 2. A crash between 2 and 3 leaves an unreferenced file,
   which remove_orphan_files() deletes once it is older than the grace period.
"""

import contextlib
import dataclasses
import functools
import io
import json
import logging
import re
import zipfile
import zlib
from dataclasses import dataclass, field

import pydicom
from pydicom.datadict import dictionary_VR
from django.conf import settings
from django.db import connection
from django.utils import timezone
from pydicom.errors import InvalidDicomError
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, MediaStorageDirectoryStorage,
    PYDICOM_IMPLEMENTATION_UID,
)

from archive.errors import (  # noqa: F401 (raised here, caught by name)
    ArchiveError, ConflictingInstance, CredentialsRefused, NotDicom, RejectedInstance, UnsyncedCommit,
)
from archive import header, tags
from archive.identifiers import (
    instance_public_id,
    patient_public_id,
    series_public_id,
    study_public_id,
)
from archive.models import Attachment, AuditEvent, Change, ChangeType, Instance, Level, Patient, Series, Study
from archive import spool as spooling
from archive.spool import spool
from archive.storage import get_storage
from archive import db, recycling, roles, signals, space

log = logging.getLogger(__name__)

SUCCESS = "Success"
ALREADY_STORED = "AlreadyStored"

# Values above this size are skipped, not read, while parsing the header: the
# pixel data of a 2 GB multi-frame never enters memory.
DEFER_SIZE = 4096
UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class Origin:
    """Where an instance came from (Orthanc's Origin metadata: RestApi, DicomProtocol, ...)."""

    kind: str
    remote_aet: str = ""
    remote_ip: str = ""
    called_aet: str = ""
    username: str = ""
    # Who the audit trail names for this store ("user", "token" or "ae", and the
    # name), and how it arrived. With an actor, the store's audit row is written
    # in the store's own transaction: a stored instance is never missing from
    # the trail, and costs no second transaction.
    actor_kind: str = ""
    actor: str = ""
    method: str = ""
    path: str = ""
    # A script's credentials (archive.roles.Credentials) that the store's own
    # transaction checks again; CredentialsRefused when they no longer hold.
    credentials: object = field(default=None, compare=False)

    @classmethod
    def http(cls, address, username, actor_kind="", actor="", path="", credentials=None):
        """An upload over HTTP (POST /instances, STOW-RS, the console's upload)."""
        return cls(kind="RestApi", remote_ip=address, username=username, actor_kind=actor_kind, actor=actor,
                   method="POST" if actor_kind else "", path=path, credentials=credentials)

    @classmethod
    def dicom(cls, calling_aet, address, called_aet="", audited=False):
        """A C-STORE received from a DICOM peer (on the listener, or during a C-GET);
        `audited` names the peer in the audit trail for each instance it stores."""
        return cls(kind="DicomProtocol", remote_aet=calling_aet, remote_ip=address, called_aet=called_aet,
                   actor_kind="ae" if audited else "", actor=calling_aet if audited else "",
                   method="C-STORE" if audited else "")


@dataclass(frozen=True)
class StoreResult:
    status: str
    instance_id: str
    series_id: str
    study_id: str
    patient_id: str
    sop_instance_uid: str


@dataclass
class ParsedInstance:
    patient_id: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    patient_tags: dict = field(default_factory=dict)
    study_tags: dict = field(default_factory=dict)
    series_tags: dict = field(default_factory=dict)
    instance_tags: dict = field(default_factory=dict)
    image_tags: dict = field(default_factory=dict)

    @property
    def public_ids(self):
        return (
            patient_public_id(self.patient_id),
            study_public_id(self.patient_id, self.study_uid),
            series_public_id(self.patient_id, self.study_uid, self.series_uid),
            instance_public_id(self.patient_id, self.study_uid, self.series_uid, self.sop_instance_uid),
        )


def store(source, origin, parsed=None):
    """Store one DICOM Part 10 file, or a bare data set (part10()), given as bytes
    or a seekable binary file object.

    Returns a StoreResult whose status is SUCCESS or ALREADY_STORED. Raises
    RejectedInstance for input that cannot be stored, db.DatabaseBusy when the
    index stayed contended past the replay bound, storage.StorageError when the
    storage area failed; in every one of these cases nothing is left behind.
    A caller that had to read the header first (STOW-RS checks the study of a
    part) passes what parse() gave it, so the file is parsed once.
    """
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with contextlib.ExitStack() as owned:
        if parsed is None:
            try:
                stream = owned.enter_context(part10(stream))
            except RejectedInstance:
                signals.count("pacs_instances_rejected_total", origin=origin.kind)
                raise
            start = stream.tell()
            parsed = parse(stream, origin)
            stream.seek(start)
        return _store_parsed(stream, parsed, origin)


def _store_parsed(stream, parsed, origin):
    space.check_room()
    storage = get_storage()
    stored = storage.put(stream)
    try:
        # On PostgreSQL the index write is one statement, unless a bounded archive
        # makes room first.
        one = connection.vendor == "postgresql" and not recycling.bounded()
        result = db.run(_index_instance, parsed, stored, origin, timezone.now(), one_statement=one)
    except UnsyncedCommit:
        raise  # committed: the index names the file
    except BaseException:
        storage.delete(stored.key)
        raise
    if result.status != SUCCESS and _is_ours(stored.key):
        # A replay after the connection was lost as the write committed: the index
        # already has this very file. It is stored, and must stay.
        result = dataclasses.replace(result, status=SUCCESS)
    if result.status != SUCCESS:
        storage.delete(stored.key)
    signals.count("pacs_instances_stored_total" if result.status == SUCCESS else "pacs_instances_already_stored_total",
                  origin=origin.kind)
    return result


def _is_ours(key):
    return Attachment.objects.filter(storage_key=key).exists()


ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class ZipMember:
    """One file of a stored ZIP: what storing it gave, or the error that refused it."""

    name: str
    result: StoreResult | None = None
    error: ArchiveError | None = None
    # Not a DICOM instance at all (error is a NotDicom): Orthanc leaves it out of its answer.
    skipped: bool = False


def store_zip(stream, origin):
    """Store each file of a ZIP archive (a seekable stream) through store(); a
    ZipMember per file, in the archive's order. A member that is refused does not
    stop the others; one that is no DICOM instance (NotDicom) is marked skipped.
    Raises RejectedInstance when the archive cannot be read."""
    try:
        archive = zipfile.ZipFile(stream)
    except zipfile.BadZipFile as error:
        raise RejectedInstance(f"the body looks like a ZIP archive but cannot be read: {error}")
    members = []
    with archive:
        files = [member for member in archive.infolist() if not member.is_dir()]
        if len(files) > settings.ZIP_MAX_MEMBERS:
            raise RejectedInstance(f"the ZIP archive has {len(files)} files, more than PACS_ZIP_MAX_MEMBERS "
                                   f"({settings.ZIP_MAX_MEMBERS}) allows")
        for member in files:
            refusal = _zip_member_refusal(member)
            if refusal:
                members.append(ZipMember(member.filename, error=RejectedInstance(refusal)))
                continue
            try:
                # Extraction stops at the declared size (zipfile) and at the upload bound.
                with archive.open(member) as packed, spool(packed, settings.MAX_UPLOAD_BYTES) as data:
                    members.append(ZipMember(member.filename, result=store(data, origin)))
            except NotDicom as error:
                # Orthanc skips what is not a DICOM instance (a README, the
                # DICOMDIR of a media) and stores the others.
                log.info("ZIP member %s skipped: %s", member.filename, error)
                members.append(ZipMember(member.filename, error=error, skipped=True))
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
                refused = RejectedInstance(f"the ZIP member cannot be extracted: {error}")
                members.append(ZipMember(member.filename, error=refused))
            except ArchiveError as error:
                members.append(ZipMember(member.filename, error=error))
    return members


# Members smaller than this are not held to the ratio: a small blank image deflates
# far beyond any ratio, and costs nothing.
ZIP_RATIO_FLOOR = 1024 * 1024


def _zip_member_refusal(member):
    """Why a ZIP member is not extracted at all, from what its directory entry declares
    (a 2 MB ZIP spooled 1.8 GB before these bounds); None when it may be."""
    if member.file_size > settings.MAX_UPLOAD_BYTES:
        return (f"the ZIP member declares {member.file_size} bytes, more than PACS_MAX_UPLOAD_MB "
                f"({settings.MAX_UPLOAD_BYTES // 2**20} MB)")
    ratio = member.file_size / max(member.compress_size, 1)
    if member.file_size > ZIP_RATIO_FLOOR and ratio > settings.ZIP_MAX_RATIO:
        return (f"the ZIP member expands {ratio:.0f} times ({member.compress_size} to {member.file_size} bytes), "
                f"more than PACS_ZIP_MAX_RATIO ({settings.ZIP_MAX_RATIO}) allows")
    return None


def parse(stream, origin=None):
    """Read the header of a Part 10 file from a seekable stream; raise RejectedInstance,
    counted as a refused instance of `origin` when one is given (an upload's)."""
    try:
        return _parse(stream)
    except RejectedInstance:
        if origin is not None:
            signals.count("pacs_instances_rejected_total", origin=origin.kind)
        raise


def _parse(stream):
    start = stream.tell()
    size = stream.seek(0, io.SEEK_END) - start
    stream.seek(start)
    if size == 0:
        raise RejectedInstance("the body is empty: expected a DICOM file")
    if size <= header.MAX_BYTES:
        data = stream.read(size)
        stream.seek(start)
        parsed = _walked(data)
        if parsed is not None:
            return parsed
    return _read(stream, start, size)


def _read(stream, start, size):
    """_parse() through pydicom's reading: the reference, and the way of every file
    archive.header leaves to it."""
    tracking = _TrackingReader(stream, start + size)
    try:
        dataset = pydicom.dcmread(tracking, defer_size=DEFER_SIZE)
    except InvalidDicomError:
        raise NotDicom(
            "not a DICOM Part 10 file: neither the 'DICM' prefix after the 128-byte preamble nor a bare data set"
        )
    except RecursionError:
        raise RejectedInstance(f"the DICOM file has sequences nested too deep to read (more than {MAX_NESTING})")
    except Exception as error:  # pydicom raises many types on malformed input
        raise RejectedInstance(f"the DICOM file cannot be parsed: {error}")
    if tracking.truncated:
        raise RejectedInstance(
            "the DICOM file is truncated: an element is longer than what remains of the file"
        )
    try:
        _check_nesting(dataset)
    except RejectedInstance:
        raise
    except Exception as error:  # a broken sequence, or nesting deep enough to exhaust the stack
        raise RejectedInstance(f"the DICOM file has an unreadable sequence: {type(error).__name__}: {error}")
    meta = getattr(dataset, "file_meta", None)
    try:
        transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "").strip("\0 ")
        media_class = str(getattr(meta, "MediaStorageSOPClassUID", "") or "").strip("\0 ")
    except Exception as error:  # a meta element pydicom cannot convert (a damaged VR)
        raise RejectedInstance(f"the file meta information has an unreadable element: {error}")
    if not transfer_syntax:
        raise RejectedInstance("the file meta information has no TransferSyntaxUID (0002,0010)")
    if len(transfer_syntax) > 64 or not UID_PATTERN.match(transfer_syntax):
        raise RejectedInstance(f"TransferSyntaxUID {transfer_syntax[:80]!r} is not a valid UID")
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        _check_deflated_complete(stream, start)
    if media_class == MediaStorageDirectoryStorage:
        raise NotDicom("a DICOMDIR is the index of a media, not an instance")
    try:
        return _instance(lambda keyword: tags.element_text(dataset, keyword), dataset.get, transfer_syntax, media_class)
    except RejectedInstance:
        raise
    except Exception as error:
        raise RejectedInstance(f"the DICOM file has an unreadable element: {error}")


# What ingest reads of a header: the main tags and what judging the file needs.
_READ_KEYWORDS = (tags.PATIENT_TAGS + tags.STUDY_TAGS + tags.SERIES_TAGS + tags.INSTANCE_TAGS + tags.IMAGE_TAGS
                  + ("SOPClassUID", "SpecificCharacterSet", "SamplesPerPixel"))
_READ_TAGS = {keyword: pydicom.datadict.tag_for_keyword(keyword) for keyword in _READ_KEYWORDS}
_WANTED = frozenset(_READ_TAGS.values())


def _walked(data):
    """The ParsedInstance of a well-formed little endian file read by archive.header
    (no pydicom: most of a store's parsing cost), or None when pydicom must read it.
    Refusals of what was read (a UID, a size) are the same as pydicom's reading gives."""
    walked = header.walk(data, _WANTED, MAX_NESTING)
    if walked is None or walked.media_class == MediaStorageDirectoryStorage:
        return None
    elements = walked.elements
    charset = elements.get(_READ_TAGS["SpecificCharacterSet"])
    encoding = tags.charset_encoding(charset[1]) if charset is not None else "latin-1"

    def text(keyword):
        element = elements.get(_READ_TAGS[keyword])
        if element is None:
            return None
        vr, value = element
        result = tags.bytes_text(vr, value, encoding)
        if result is None:
            if vr == "US" and len(value) == 2:
                return str(int.from_bytes(value, "little"))
            raise header.Unusual  # a value only pydicom's conversion reads
        return result

    def number(keyword):
        element = elements.get(_READ_TAGS[keyword])
        if element is None:
            return None
        vr, value = element
        if vr == "US" and len(value) == 2:
            return int.from_bytes(value, "little")
        raise header.Unusual

    try:
        return _instance(text, number, walked.transfer_syntax, walked.media_class)
    except RejectedInstance:
        raise
    except Exception:  # header.Unusual, or anything the walk did not foresee: pydicom decides
        return None


def _instance(text, number, transfer_syntax, media_class):
    """The ParsedInstance of a read header, from `text` (a keyword's text as
    tags.element_text gives it) and `number` (a keyword's integer value); raises
    RejectedInstance for what cannot be indexed."""
    study_uid = _uid(text, "StudyInstanceUID")
    series_uid = _uid(text, "SeriesInstanceUID")
    sop_instance_uid = _uid(text, "SOPInstanceUID")
    sop_class_uid = _uid(text, "SOPClassUID", fallback=media_class)
    patient_id = text("PatientID") or ""
    if len(patient_id) > 64:
        raise RejectedInstance("PatientID (0010,0020) is longer than 64 characters")
    _check_declared_size(number)
    return ParsedInstance(
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=sop_class_uid,
        transfer_syntax_uid=transfer_syntax,
        patient_tags=tags.collect(text, tags.PATIENT_TAGS),
        study_tags=tags.collect(text, tags.STUDY_TAGS),
        series_tags=tags.collect(text, tags.SERIES_TAGS),
        instance_tags=tags.collect(text, tags.INSTANCE_TAGS),
        image_tags=tags.collect(text, tags.IMAGE_TAGS),
    )


@contextlib.contextmanager
def part10(stream):
    """The stream as a Part 10 file: unchanged when it is one, else (a bare data
    set, as Orthanc accepts and pydicom writes when asked) in a temporary file
    with the 128-byte preamble, "DICM" and the file meta information (PS3.10
    §7.1) before the data set's bytes, which are kept as they are. Every reader
    of the stored file (rendering, sends, archives) then reads a Part 10 file."""
    start = stream.tell()
    head = stream.read(132)
    stream.seek(start)
    encoding = None if head[128:132] == b"DICM" else _bare_encoding(head)
    if encoding is None:
        yield stream
        return
    wrapped = spooling.spool_stream(_with_meta(stream, encoding))
    try:
        yield wrapped
    finally:
        wrapped.close()
        stream.seek(start)


# The value representations PS3.5 §6.2 defines: explicit VR is told from
# implicit by the two bytes after the first tag.
_VRS = {vr.encode("ascii") for vr in header.VRS}


def _bare_encoding(head):
    """The transfer syntax of a data set written without preamble and meta
    (little endian: a raw big endian data set is too rare to guess), or None."""
    if len(head) < 8:
        return None
    group = int.from_bytes(head[0:2], "little")
    if group == 0x0002:
        return "meta"  # the meta information is there, only the preamble is missing
    if group % 2 or not 0x0008 <= group <= 0x0028:
        return None  # a data set starts with its lowest group: (0008,0005) or so
    return ExplicitVRLittleEndian if head[4:6] in _VRS else ImplicitVRLittleEndian


def _with_meta(stream, encoding):
    """A reader of the preamble, "DICM", the meta information (unless the stream
    has its own) and then the stream's bytes."""
    start = stream.tell()
    header = io.BytesIO()
    header.write(b"\0" * 128 + b"DICM")
    if encoding != "meta":
        try:
            dataset = pydicom.dcmread(stream, force=True, defer_size=DEFER_SIZE,
                                      specific_tags=["SOPClassUID", "SOPInstanceUID"])
        except Exception as error:  # pydicom raises many types on what is not DICOM
            raise NotDicom(f"not a DICOM file: no preamble, and not a readable bare data set ({error})")
        stream.seek(start)
        meta = pydicom.dataset.FileMetaDataset()
        meta.MediaStorageSOPClassUID = tags.element_text(dataset, "SOPClassUID") or ""
        meta.MediaStorageSOPInstanceUID = tags.element_text(dataset, "SOPInstanceUID") or ""
        if not meta.MediaStorageSOPClassUID or not meta.MediaStorageSOPInstanceUID:
            raise NotDicom("not a DICOM file: no preamble, and a bare data set needs its SOP Class and Instance UIDs")
        meta.TransferSyntaxUID = encoding
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        write_file_meta_info(header, meta, enforce_standard=True)
    header.seek(0)
    return _Chain(header, stream)


class _Chain:
    def __init__(self, *streams):
        self._streams = list(streams)

    def read(self, size=-1):
        while self._streams:
            chunk = self._streams[0].read(size)
            if chunk:
                return chunk
            self._streams.pop(0)
        return b""


def _check_declared_size(number):
    """Refuse a frame declared larger than PACS_MAX_FRAME_MB, whatever the file's own
    size: compressed pixel data can be small and decode into gigabytes. `number`
    gives a keyword's value."""
    numbers = [number(keyword) for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated")]
    if numbers[0] is None or numbers[1] is None:
        return  # not an image
    rows, columns, samples, bits = (int(n) if n not in (None, "") else 1 for n in numbers)
    frame = rows * columns * samples * -(-bits // 8)
    if frame > settings.MAX_FRAME_BYTES:
        raise RejectedInstance(f"the image declares frames of {rows} x {columns} x {samples} samples of {bits} bits "
                               f"({frame // 2**20} MB), more than PACS_MAX_FRAME_MB ({settings.MAX_FRAME_BYTES // 2**20} MB)")


# Deeper than any structured report or real-world file nests: what goes beyond is
# built to exhaust a reader's stack (here, or in a viewer we would serve it to).
MAX_NESTING = 64


def _check_nesting(dataset, depth=1):
    for tag in list(dataset.keys()):
        raw = dataset.get_item(tag)  # not converted: cheap for everything but sequences
        vr = raw.VR
        if vr is None:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                continue
        if vr != "SQ":
            continue
        if depth > MAX_NESTING:
            raise RejectedInstance(f"the DICOM file has sequences nested more than {MAX_NESTING} deep")
        for item in dataset[tag].value:
            _check_nesting(item, depth + 1)


def _uid(text, keyword, fallback=None):
    value = text(keyword)
    if not value and fallback:
        value = str(fallback).strip("\0 ")
    if not value:
        raise RejectedInstance(f"the DICOM file has no {keyword}: it cannot be indexed")
    # PS3.5 §9.1: digits and dots, at most 64 characters. A UID also ends up in
    # file names of archives and in URLs, so nothing else may pass.
    if len(value) > 64 or not UID_PATTERN.match(value):
        raise RejectedInstance(f"{keyword} {value[:80]!r} is not a valid UID (digits and dots, at most 64 characters)")
    return value


class _TrackingReader(io.RawIOBase):
    """Notes whether the parser asked for bytes past the end of the file.

    pydicom stops quietly at the end of a truncated file; an element header or
    value cut short, or a skipped value reaching past the end, is how truncation
    shows. (A file cut exactly between two elements is a valid, shorter file.)
    """

    def __init__(self, stream, end):
        self._stream = stream
        self._end = end
        self.truncated = False

    def read(self, n=-1):
        position = self._stream.tell()
        data = self._stream.read(n)
        if n is not None and n > 0 and len(data) < n and position != self._end:
            self.truncated = True
        return data

    def seek(self, offset, whence=io.SEEK_SET):
        position = self._stream.seek(offset, whence)
        if position > self._end:
            self.truncated = True
        return position

    def tell(self):
        return self._stream.tell()

    def readable(self):
        return True

    def seekable(self):
        return True


def _check_deflated_complete(stream, start):
    # pydicom inflates the whole dataset at once and accepts a cut stream; zlib
    # knows whether the deflate stream reached its end.
    stream.seek(start)
    data = stream.read()
    offset = 132
    # Skip the file meta group (always explicit VR little endian, PS3.10 §7.1).
    while offset + 8 <= len(data) and data[offset : offset + 2] == b"\x02\x00":
        vr = data[offset + 4 : offset + 6]
        if vr in (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"):
            length = int.from_bytes(data[offset + 8 : offset + 12], "little")
            offset += 12 + length
        else:
            length = int.from_bytes(data[offset + 6 : offset + 8], "little")
            offset += 8 + length
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflater.decompress(data[offset:])
    except zlib.error as error:
        raise RejectedInstance(f"the deflated dataset cannot be inflated: {error}")
    if not inflater.eof:
        raise RejectedInstance("the DICOM file is truncated: the deflated dataset ends early")


# --- the unit of work ------------------------------------------------------


def _index_instance(parsed, stored, origin, now):
    # A bounded archive makes room (or refuses) before any row is written; unbounded,
    # this costs nothing. What it deletes is undone with the transaction when the
    # write then refuses the origin's credentials.
    recycling.make_room(parsed.public_ids[0], stored.size, parsed.sop_instance_uid)
    if connection.vendor == "postgresql":
        return _index_in_one_statement(parsed, stored, origin, now)
    return _index_step_by_step(parsed, stored, origin, now)


def _confirm(credentials):
    """Check the origin's credentials in the write's transaction, before its first row."""
    with db.statements() as cursor:
        cursor.execute("SELECT " + roles.credentials_hold(credentials.role),
                       [credentials.user_id, credentials.password])
        held = bool(cursor.fetchone()[0])
    credentials.settle(held)


def _index_step_by_step(parsed, stored, origin, now):
    """The index write as a statement per row (SQLite: in-process, so round trips cost
    little, and it has no data-modifying WITH). It writes what _index_in_one_statement
    writes."""
    patient_pid, study_pid, series_pid, instance_pid = parsed.public_ids
    node = settings.NODE_NAME
    stamp = connection.ops.adapt_datetimefield_value(now)
    if origin.credentials is not None:
        _confirm(origin.credentials)
    with db.statements() as cursor:
        # The instance first: a known SOP Instance UID changes nothing at all,
        # not even the parents' last update.
        cursor.execute(
            f"SELECT public_id FROM {Instance._meta.db_table} WHERE sop_instance_uid = %s",
            [parsed.sop_instance_uid],
        )
        row = cursor.fetchone()
        if row is not None:
            result = _already_stored(row[0], parsed)
            _audit_store(cursor, origin, result, stamp, _audit_subject(parsed))
            return result

        patient_pk, new_patient = _upsert(
            cursor,
            Patient,
            stamp,
            public_id=patient_pid,
            main_dicom_tags=json.dumps(parsed.patient_tags),
            patient_id=parsed.patient_id,
            patient_id_norm=_norm(parsed.patient_id, 64),
            patient_name_norm=_norm(parsed.patient_tags.get("PatientName"), 324),
            patient_birth_date=_date(parsed.patient_tags.get("PatientBirthDate")),
            patient_sex=(parsed.patient_tags.get("PatientSex") or "")[:16],
        )
        study_pk, new_study = _upsert(
            cursor,
            Study,
            stamp,
            public_id=study_pid,
            main_dicom_tags=json.dumps(parsed.study_tags),
            patient_id=patient_pk,
            study_instance_uid=parsed.study_uid,
            study_date=_date(parsed.study_tags.get("StudyDate")),
            accession_number_norm=_norm(parsed.study_tags.get("AccessionNumber"), 64),
            study_description_norm=_norm(parsed.study_tags.get("StudyDescription"), 64),
            referring_physician_norm=_norm(parsed.study_tags.get("ReferringPhysicianName"), 324),
        )
        series_pk, new_series = _upsert(
            cursor,
            Series,
            stamp,
            public_id=series_pid,
            main_dicom_tags=json.dumps(parsed.series_tags),
            study_id=study_pk,
            series_instance_uid=parsed.series_uid,
            modality=(parsed.series_tags.get("Modality") or "")[:16].upper(),
            series_description_norm=_norm(parsed.series_tags.get("SeriesDescription"), 64),
            series_number=(parsed.series_tags.get("SeriesNumber") or "")[:12],
        )
        inserted = db.insert_unless_exists(
            cursor,
            Instance,
            "sop_instance_uid",
            public_id=instance_pid,
            main_dicom_tags=json.dumps(parsed.instance_tags),
            created_at=stamp,
            last_update=stamp,
            is_stable=False,
            series_id=series_pk,
            sop_instance_uid=parsed.sop_instance_uid,
            sop_class_uid=parsed.sop_class_uid,
            transfer_syntax_uid=parsed.transfer_syntax_uid,
            instance_number=_int(parsed.instance_tags.get("InstanceNumber")),
            image_tags=json.dumps(parsed.image_tags),
            origin=origin.kind,
            remote_aet=origin.remote_aet[:16],
            remote_ip=origin.remote_ip[:45],
            called_aet=origin.called_aet[:16],
            http_username=origin.username[:150],
            node=node[:128],
        )
        if inserted is None:
            # Another writer indexed the same SOP Instance UID after our SELECT.
            # Run again: the SELECT now sees it, and this transaction's parent
            # updates are rolled back.
            raise db.Retry(f"racing insert of {parsed.sop_instance_uid}")
        db.insert_unless_exists(
            cursor,
            Attachment,
            "storage_key",
            level=Level.INSTANCE,
            resource_id=instance_pid,
            name=Attachment.DICOM,
            storage_key=stored.key,
            size=stored.size,
            md5=stored.md5,
            revision=1,
        )
        changes = [(ChangeType.NEW_INSTANCE, Level.INSTANCE, instance_pid)]
        if new_series:
            changes.append((ChangeType.NEW_SERIES, Level.SERIES, series_pid))
        if new_study:
            changes.append((ChangeType.NEW_STUDY, Level.STUDY, study_pid))
        if new_patient:
            changes.append((ChangeType.NEW_PATIENT, Level.PATIENT, patient_pid))
        cursor.executemany(
            f"INSERT INTO {Change._meta.db_table} (change_type, level, public_id, node, date) "
            "VALUES (%s, %s, %s, %s, %s)",
            [(kind, level, pid, node[:128], stamp) for kind, level, pid in changes],
        )
        result = StoreResult(SUCCESS, instance_pid, series_pid, study_pid, patient_pid, parsed.sop_instance_uid)
        _audit_store(cursor, origin, result, stamp, _audit_subject(parsed))
    return result


def _audit_store(cursor, origin, result, stamp, subject):
    if origin.actor_kind:
        cursor.execute(f"INSERT INTO {AuditEvent._meta.db_table} ({AUDIT_COLUMNS}) "
                       f"VALUES ({', '.join(['%s'] * len(AUDIT_COLUMNS.split(', ')))})",
                       _audit_values(origin, result.instance_id, {"status": result.status, **subject}, stamp))


AUDIT_COLUMNS = "at, actor_kind, actor, address, action, method, path, status, level, resource, details, node"


def _audit_values(origin, instance_pid, details, stamp):
    # The status column holds what the transport answered: 200 over HTTP, the
    # DIMSE Success status (0) over DICOM.
    answered = 0 if origin.method == "C-STORE" else 200
    return [stamp, origin.actor_kind, origin.actor[:160], origin.remote_ip[:45], "store", origin.method,
            origin.path[:500], answered, Level.INSTANCE, instance_pid, json.dumps(details), settings.NODE_NAME]


def _audit_subject(parsed):
    """What the stored instance is about, as audit.subject() words it, from the tags
    in hand (no query in the store's transaction)."""
    tags_in_hand = {**parsed.patient_tags, **parsed.study_tags, **parsed.series_tags, **parsed.instance_tags}
    keys = ("PatientName", "PatientID", "StudyDate", "StudyDescription", "AccessionNumber", "Modality",
            "SeriesDescription", "InstanceNumber")
    return {"subject": {key: tags_in_hand[key] for key in keys if tags_in_hand.get(key)}}


def _index_in_one_statement(parsed, stored, origin, now):
    """The index write as one statement (PostgreSQL): every row of _index_step_by_step
    in a single round trip, run as a transaction by itself (db.run's one_statement).

    Each step feeds the next through RETURNING; nothing is written when the SOP
    Instance UID is known (`known`). `xmax = 0` tells a row this statement inserted
    from an existing one it touched (ON CONFLICT DO UPDATE): only new resources get
    a New* change. All steps see one snapshot, so a racing writer of the same UID
    shows as an instance insert that did nothing: the unit is replayed, as the
    step-by-step write does. The origin's credentials are checked by the statement
    too (when they no longer hold, it writes nothing), or, in a transaction of
    several (a bounded archive's), by a statement before it.
    """
    patient_pid, study_pid, series_pid, instance_pid = parsed.public_ids
    credentials = origin.credentials
    if credentials is not None and connection.in_atomic_block:
        _confirm(credentials)
        credentials = None
    values = {
        "sop": parsed.sop_instance_uid, "stamp": now, "node": settings.NODE_NAME[:128],
        "patient_pid": patient_pid, "patient_tags": json.dumps(parsed.patient_tags),
        "patient_id": parsed.patient_id, "patient_id_norm": _norm(parsed.patient_id, 64),
        "patient_name_norm": _norm(parsed.patient_tags.get("PatientName"), 324),
        "birth_date": _date(parsed.patient_tags.get("PatientBirthDate")),
        "sex": (parsed.patient_tags.get("PatientSex") or "")[:16],
        "study_pid": study_pid, "study_tags": json.dumps(parsed.study_tags), "study_uid": parsed.study_uid,
        "study_date": _date(parsed.study_tags.get("StudyDate")),
        "accession": _norm(parsed.study_tags.get("AccessionNumber"), 64),
        "study_description": _norm(parsed.study_tags.get("StudyDescription"), 64),
        "referring": _norm(parsed.study_tags.get("ReferringPhysicianName"), 324),
        "series_pid": series_pid, "series_tags": json.dumps(parsed.series_tags), "series_uid": parsed.series_uid,
        "modality": (parsed.series_tags.get("Modality") or "")[:16].upper(),
        "series_description": _norm(parsed.series_tags.get("SeriesDescription"), 64),
        "series_number": (parsed.series_tags.get("SeriesNumber") or "")[:12],
        "instance_pid": instance_pid, "instance_tags": json.dumps(parsed.instance_tags),
        "sop_class": parsed.sop_class_uid, "syntax": parsed.transfer_syntax_uid,
        "instance_number": _int(parsed.instance_tags.get("InstanceNumber")),
        "image_tags": json.dumps(parsed.image_tags),
        "origin": origin.kind, "remote_aet": origin.remote_aet[:16], "remote_ip": origin.remote_ip[:45],
        "called_aet": origin.called_aet[:16], "http_username": origin.username[:150],
        "key": stored.key, "size": stored.size, "md5": stored.md5,
    }
    if origin.actor_kind:
        # Written whether the instance is new or already stored: both are a store
        # that was answered.
        row = dict(zip(AUDIT_COLUMNS.split(", "), _audit_values(origin, instance_pid, _audit_subject(parsed),
                                                                  now)))
        values.update(actor_kind=row["actor_kind"], actor=row["actor"], address=row["address"],
                      action=row["action"], method=row["method"], path=row["path"], answered=row["status"],
                      details=row["details"])
    if credentials is not None:
        values.update(credential_user=credentials.user_id, credential_password=credentials.password)
    sql = one_statement_sql(bool(origin.actor_kind), credentials.role if credentials is not None else None)
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        known, inserted, held = cursor.fetchone()
    if credentials is not None:
        credentials.settle(held)
    if known is not None:
        return _already_stored(known, parsed)
    if not inserted:
        # Another writer indexed the same SOP Instance UID after this statement's
        # snapshot; replayed, `known` sees it. What this one wrote (the parents'
        # touches) rolls back, or, run as its own transaction, is what the other
        # writer wrote too.
        raise db.Retry(f"racing insert of {parsed.sop_instance_uid}")
    return StoreResult(SUCCESS, instance_pid, series_pid, study_pid, patient_pid, parsed.sop_instance_uid)


@functools.lru_cache(maxsize=None)
def one_statement_sql(with_audit, confirming_role=None):
    """The text of _index_in_one_statement's statement, built once per process.

    Its constants are written into the text and its whitespace is collapsed, so
    that the text and its parameters stay under psycopg's limits for caching the
    conversion of a query (MAX_CACHED_STATEMENT_LENGTH and _PARAMS, a test keeps
    them there): over them, psycopg parses the whole statement again on every
    store. The audit row is written whether the instance is new or already stored,
    but neither for a write that lost a race (it is replayed) nor for a UID known
    under another study (refused): the statement may be its own transaction.
    With `confirming_role`, nothing is written unless the credentials in the
    parameters still hold that role (archive.roles.credentials_hold).
    """
    def literal(value):
        return "'" + str(value).replace("'", "''") + "'"

    touch = "ON CONFLICT (public_id) DO UPDATE SET last_update = EXCLUDED.last_update, is_stable = false " \
            "RETURNING id, (xmax = 0) AS inserted"
    held = "true"
    if confirming_role is not None:
        held = roles.credentials_hold(confirming_role, user="%(credential_user)s",
                                      password="%(credential_password)s")
    audit = ""
    if with_audit:
        audit = f""",
        audit AS (
            INSERT INTO {AuditEvent._meta.db_table} ({AUDIT_COLUMNS})
            SELECT %(stamp)s, %(actor_kind)s, %(actor)s, %(address)s, %(action)s, %(method)s, %(path)s,
                   %(answered)s, {literal(Level.INSTANCE)}, %(instance_pid)s,
                   %(details)s::jsonb || jsonb_build_object('status', CASE WHEN EXISTS (SELECT 1 FROM known)
                                                     THEN {literal(ALREADY_STORED)} ELSE {literal(SUCCESS)} END),
                   %(node)s
            WHERE (EXISTS (SELECT 1 FROM known WHERE public_id = %(instance_pid)s) OR EXISTS (SELECT 1 FROM i))
                  AND (SELECT held FROM ok)
        )"""
    sql = f"""
        WITH known AS (
            SELECT public_id FROM {Instance._meta.db_table} WHERE sop_instance_uid = %(sop)s
        ),
        ok AS (SELECT {held} AS held),
        p AS (
            INSERT INTO {Patient._meta.db_table} (public_id, main_dicom_tags, patient_id, patient_id_norm,
                patient_name_norm, patient_birth_date, patient_sex, created_at, last_update, is_stable)
            SELECT %(patient_pid)s, %(patient_tags)s::jsonb, %(patient_id)s, %(patient_id_norm)s,
                   %(patient_name_norm)s, %(birth_date)s, %(sex)s, %(stamp)s, %(stamp)s, false
            WHERE NOT EXISTS (SELECT 1 FROM known) AND (SELECT held FROM ok)
            {touch}
        ),
        st AS (
            INSERT INTO {Study._meta.db_table} (public_id, main_dicom_tags, patient_id, study_instance_uid,
                study_date, accession_number_norm, study_description_norm, referring_physician_norm,
                created_at, last_update, is_stable)
            SELECT %(study_pid)s, %(study_tags)s::jsonb, p.id, %(study_uid)s, %(study_date)s, %(accession)s,
                   %(study_description)s, %(referring)s, %(stamp)s, %(stamp)s, false
            FROM p
            {touch}
        ),
        se AS (
            INSERT INTO {Series._meta.db_table} (public_id, main_dicom_tags, study_id, series_instance_uid,
                modality, series_description_norm, series_number, created_at, last_update, is_stable)
            SELECT %(series_pid)s, %(series_tags)s::jsonb, st.id, %(series_uid)s, %(modality)s,
                   %(series_description)s, %(series_number)s, %(stamp)s, %(stamp)s, false
            FROM st
            {touch}
        ),
        i AS (
            INSERT INTO {Instance._meta.db_table} (public_id, main_dicom_tags, created_at, last_update, is_stable,
                series_id, sop_instance_uid, sop_class_uid, transfer_syntax_uid, instance_number, image_tags,
                origin, remote_aet, remote_ip, called_aet, http_username, node)
            SELECT %(instance_pid)s, %(instance_tags)s::jsonb, %(stamp)s, %(stamp)s, false, se.id, %(sop)s,
                   %(sop_class)s, %(syntax)s, %(instance_number)s::integer, %(image_tags)s::jsonb, %(origin)s,
                   %(remote_aet)s, %(remote_ip)s, %(called_aet)s, %(http_username)s, %(node)s
            FROM se
            ON CONFLICT (sop_instance_uid) DO NOTHING
            RETURNING id
        ),
        a AS (
            INSERT INTO {Attachment._meta.db_table} (level, resource_id, name, storage_key, size, md5, revision)
            SELECT {literal(Level.INSTANCE)}, %(instance_pid)s, {literal(Attachment.DICOM)}, %(key)s, %(size)s,
                   %(md5)s, 1
            FROM i
            ON CONFLICT (storage_key) DO NOTHING
        ),
        c AS (
            INSERT INTO {Change._meta.db_table} (change_type, level, public_id, node, date)
            SELECT new.change_type, new.level, new.public_id, %(node)s, %(stamp)s
            FROM (VALUES (1, {literal(ChangeType.NEW_INSTANCE)}, {literal(Level.INSTANCE)}, %(instance_pid)s),
                         (2, {literal(ChangeType.NEW_SERIES)}, {literal(Level.SERIES)}, %(series_pid)s),
                         (3, {literal(ChangeType.NEW_STUDY)}, {literal(Level.STUDY)}, %(study_pid)s),
                         (4, {literal(ChangeType.NEW_PATIENT)}, {literal(Level.PATIENT)}, %(patient_pid)s))
                 AS new (rank, change_type, level, public_id),
                 i, p, st, se
            WHERE new.rank = 1 OR (new.rank = 2 AND se.inserted) OR (new.rank = 3 AND st.inserted)
                  OR (new.rank = 4 AND p.inserted)
            ORDER BY new.rank
        ){audit}
        SELECT (SELECT public_id FROM known), EXISTS (SELECT 1 FROM i), (SELECT held FROM ok)
    """
    return " ".join(sql.split())


def _already_stored(existing_public_id, parsed):
    patient_pid, study_pid, series_pid, instance_pid = parsed.public_ids
    if existing_public_id != instance_pid:
        raise ConflictingInstance(
            f"SOP Instance UID {parsed.sop_instance_uid} is already stored under another "
            "patient, study or series; a UID names one object only (PS3.5 §9)"
        )
    return StoreResult(ALREADY_STORED, instance_pid, series_pid, study_pid, patient_pid, parsed.sop_instance_uid)


def _upsert(cursor, model, stamp, **values):
    """Touch the existing resource row, or insert it; return (pk, inserted).

    Most stores add to a study that exists: the UPDATE comes first, so they cost
    one statement per level. INSERT ... ON CONFLICT DO NOTHING lets concurrent
    writers of a new study meet on the unique public id without an error; the
    loser then updates the winner's row. Writers take patient → study → series in
    that order, so they cannot deadlock on them.
    """
    touch = (f"UPDATE {model._meta.db_table} SET last_update = %s, is_stable = %s "
             "WHERE public_id = %s RETURNING id")
    cursor.execute(touch, [stamp, False, values["public_id"]])
    row = cursor.fetchone()
    if row is not None:
        return row[0], False
    values.update(created_at=stamp, last_update=stamp, is_stable=False)
    pk = db.insert_unless_exists(cursor, model, "public_id", **values)
    if pk is not None:
        return pk, True
    cursor.execute(touch, [stamp, False, values["public_id"]])
    row = cursor.fetchone()
    if row is None:
        # The row was there a moment ago and is gone: deleted concurrently.
        raise db.Retry(f"{model.__name__} {values['public_id']} vanished")
    return row[0], False


def _norm(text, limit):
    return tags.normalize(text)[:limit]


def _date(text):
    text = (text or "").strip()
    return text[:8] if len(text) >= 8 and text[:8].isdigit() else ""


def _int(text):
    try:
        return int(str(text).split("\\")[0].strip())
    except (TypeError, ValueError):
        return None


# --- what the housekeeper calls --------------------------------------------


def remove_orphan_files(grace_seconds=None):
    """Delete stored files that no attachment refers to, and stale temporary files.

    Only files older than the grace period are considered, so a file written by
    a store() still in flight is never touched. Returns the number removed.
    """
    grace = settings.ORPHAN_GRACE_SECONDS if grace_seconds is None else grace_seconds
    storage = get_storage()
    removed = storage.remove_stale_temporaries(grace)
    batch = []
    for key in storage.keys(older_than=grace):
        batch.append(key)
        if len(batch) == 500:
            removed += _remove_unreferenced(storage, batch)
            batch = []
    if batch:
        removed += _remove_unreferenced(storage, batch)
    if removed:
        log.info("removed %d orphan file(s) from the storage area", removed)
    return removed


def _remove_unreferenced(storage, keys):
    referenced = set(Attachment.objects.filter(storage_key__in=keys).values_list("storage_key", flat=True))
    orphans = [key for key in keys if key not in referenced]
    for key in orphans:
        storage.delete(key)
    return len(orphans)
