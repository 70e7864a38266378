"""ZIP archives and DICOMDIR media of resources, built from the index and the storage.

A synchronous archive is a generator of ZIP bytes: each stored file is read in
chunks and compressed into the stream, so the first bytes leave before the last
file is opened, memory stays flat, and no temporary file exists at any point.
An asynchronous archive writes the same bytes into the archive area of the
storage module, where any node can serve it.

The folder layout is Orthanc's: "PatientID PatientName/AccessionNumber
StudyDescription/Modality SeriesDescription/CT000000.dcm", reduced to ASCII
letters, digits, space, dot and underscore; DICOMDIR media hold IMAGES/IM<n>
and the DICOMDIR that indexes them.
"""

import dataclasses
import datetime
import io
import logging
import zipfile
from dataclasses import dataclass

from django.conf import settings
from django.db.models import OuterRef, Q, Subquery
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage, PYDICOM_IMPLEMENTATION_UID, generate_uid

from archive import transcode
from archive.errors import TranscodeError, UnknownResource  # noqa: F401 (raised here, caught by name)
from archive.models import Attachment, Instance, Level
from archive.resources import BY_ANCESTOR, MODELS
from archive.storage import CHUNK, get_storage

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One stored file of an archive, and what its path and DICOMDIR record need."""

    path: str
    key: str
    size: int
    patient: dict
    study: dict
    series: dict
    instance: dict
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str


def entries(resources, media=False):
    """The files of the resources (public ids of any level, possibly mixed), each
    once, in patient / study / series / instance-number order."""
    condition = Q()
    for public_id in dict.fromkeys(resources):
        for level, model in MODELS.items():
            pk = model.objects.filter(public_id=public_id).values_list("pk", flat=True).first()
            if pk is None:
                continue
            condition |= Q(pk=pk) if level == Level.INSTANCE else Q(**{BY_ANCESTOR[Level.INSTANCE][level]: pk})
            break
        else:
            raise UnknownResource(public_id)
    if not resources:
        return []
    files = Attachment.objects.filter(resource_id=OuterRef("public_id"), name=Attachment.DICOM)
    rows = (
        Instance.objects.filter(condition)
        .select_related("series__study__patient")
        .annotate(key=Subquery(files.values("storage_key")[:1]), size=Subquery(files.values("size")[:1]))
        .order_by("series__study__patient_id", "series__study_id", "series_id", "instance_number", "pk")
    )
    result = []
    names = _Names()
    for number, row in enumerate(rows):
        series = row.series
        study = series.study
        patient = study.patient
        tags = (patient.main_dicom_tags, study.main_dicom_tags, series.main_dicom_tags)
        if media:
            path = f"IMAGES/IM{number}"
        else:
            path = names.path(patient.pk, study.pk, series.pk, tags)
        result.append(Entry(path=path, key=row.key, size=row.size or 0, patient=tags[0], study=tags[1],
                            series=tags[2], instance=row.main_dicom_tags, sop_class_uid=row.sop_class_uid,
                            sop_instance_uid=row.sop_instance_uid, transfer_syntax_uid=row.transfer_syntax_uid))
    return result


# Longest folder name an archive holds: readable, and far below every filesystem's limit.
NAME_LENGTH = 64


def _clean(text):
    """A safe path component from DICOM text an unknown AE may have chosen: ASCII
    letters, digits, space, dot and underscore only (no separator, no control
    character), runs of spaces as one, no leading or trailing dot or space (so never
    "." nor "..", nor a name Windows trims), at most NAME_LENGTH characters; empty
    when nothing is left (the caller names it "Unknown ...")."""
    text = str(text or "").replace("^", " ")
    kept = "".join(c for c in text if c.isascii() and (c.isalnum() or c in " ._"))
    return " ".join(kept.split())[:NAME_LENGTH].strip(" .")


class _Names:
    """Orthanc's folder names, made unique among siblings with -2, -3..."""

    def __init__(self):
        self.folders = {}  # (parent folder, pk) -> folder
        self.taken = {}  # parent folder -> names used
        self.counters = {}  # series folder -> next file number

    def _folder(self, parent, pk, wanted, unknown):
        if (parent, pk) not in self.folders:
            name = wanted or unknown
            used = self.taken.setdefault(parent, set())
            candidate, n = name, 1
            # Unique as case-insensitive filesystems (Windows, macOS) see names.
            while candidate.casefold() in used:
                n += 1
                candidate = f"{name}-{n}"
            used.add(candidate.casefold())
            self.folders[(parent, pk)] = f"{parent}{candidate}/"
        return self.folders[(parent, pk)]

    def path(self, patient_pk, study_pk, series_pk, tags):
        patient, study, series = tags
        top = self._folder("", patient_pk, _clean(f"{patient.get('PatientID', '')} {patient.get('PatientName', '')}"),
                           "Unknown Patient")
        middle = self._folder(top, study_pk,
                              _clean(f"{study.get('AccessionNumber', '')} {study.get('StudyDescription', '')}"),
                              "Unknown Study")
        bottom = self._folder(middle, series_pk,
                              _clean(f"{series.get('Modality', '')} {series.get('SeriesDescription', '')}"),
                              "Unknown Series")
        number = self.counters.get(bottom, 0)
        self.counters[bottom] = number + 1
        prefix = "".join(c for c in _clean(series.get("Modality", "")) if c.isalnum())[:2]
        return f"{bottom}{prefix}{number:0{8 - len(prefix)}d}.dcm"


# --- ZIP writing ---------------------------------------------------------------


class _Sink(io.RawIOBase):
    """A write-only stream whose bytes are taken out by drain()."""

    def __init__(self):
        self.parts = []

    def writable(self):
        return True

    def write(self, data):
        self.parts.append(bytes(data))
        return len(data)

    def drain(self):
        if self.parts:
            data = b"".join(self.parts)
            self.parts = []
            yield data


# ZipInfo's slot for a member's level: private before Python 3.13, public since.
LEVEL_ATTRIBUTE = "compress_level" if hasattr(zipfile.ZipInfo, "compress_level") else "_compresslevel"


def _zip_info(path, size, moment):
    info = zipfile.ZipInfo(path, date_time=moment.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED if settings.ZIP_LEVEL else zipfile.ZIP_STORED
    # ZipFile.open(info, "w") ignores the archive's compresslevel for a ZipInfo it
    # is given: without this every member is deflated at zlib's default, level 6.
    setattr(info, LEVEL_ATTRIBUTE, settings.ZIP_LEVEL or None)
    info.file_size = size
    info.external_attr = 0o644 << 16
    return info


def write_zip(files, out, media=False, step=None, transcode_to=None):
    """Write the ZIP of the entries to `out` (seekable or not); step(done, total)
    is called after each file. Returns the uncompressed size.

    With `transcode_to` (a transfer syntax UID, Orthanc's `transcode` option) each
    file is written in that syntax, one frame at a time (archive/transcode.py);
    a file that cannot be converted goes as stored, and the log says so."""
    storage = get_storage()
    moment = datetime.datetime.now()
    total = 0
    if transcode_to and media:
        # The DICOMDIR names each file's syntax.
        files = [dataclasses.replace(entry, transfer_syntax_uid=transcode_to)
                 if transcode.can_transcode(entry.transfer_syntax_uid, transcode_to, lossy=True) else entry
                 for entry in files]
    # Built before the first byte: a DICOMDIR that cannot be built fails the
    # request while it can still answer an error.
    dicomdir = build_dicomdir(files) if media else None
    with zipfile.ZipFile(out, "w", allowZip64=True, compresslevel=settings.ZIP_LEVEL or None) as archive:
        for done, entry in enumerate(files, 1):
            info = _zip_info(entry.path, entry.size, moment)
            # A transcoded file's size is known once written: ZIP64 fields in case it passes 4 GB.
            with storage.open(entry.key) as source, archive.open(info, "w", force_zip64=bool(transcode_to)) as target:
                for chunk in _member_chunks(source, entry, transcode_to):
                    target.write(chunk)
                    total += len(chunk)
                    yield
            if step:
                step(done, len(files))
        if media:
            archive.writestr(_zip_info("DICOMDIR", len(dicomdir), moment), dicomdir)
            total += len(dicomdir)
    return total


def _member_chunks(source, entry, transcode_to):
    if transcode_to:
        # The file's own header says its syntax (the entry's may already name the
        # target, for the DICOMDIR); one already in it is copied as it is.
        try:
            chunks = transcode.transcode(source, transcode_to, lossy=True)
            first = next(chunks, b"")
        except TranscodeError as error:
            log.warning("archive: instance %s kept in %s, not transcoded to %s: %s", entry.sop_instance_uid,
                        entry.transfer_syntax_uid, transcode_to, error)
            source.seek(0)
        else:
            yield first
            yield from chunks
            return
    while chunk := source.read(CHUNK):
        yield chunk


def stream_zip(files, media=False, transcode_to=None):
    """The ZIP of the entries as a generator of byte strings, built while it is sent."""
    sink = _Sink()
    for _ in write_zip(files, sink, media=media, transcode_to=transcode_to):
        yield from sink.drain()
    yield from sink.drain()


def write_zip_file(files, out, media=False, step=None, transcode_to=None):
    """Write the whole ZIP to a file object; the uncompressed size."""
    writer = write_zip(files, out, media=media, step=step, transcode_to=transcode_to)
    while True:
        try:
            next(writer)
        except StopIteration as end:
            return end.value


# --- DICOMDIR ------------------------------------------------------------------

def _record(kind, keys):
    record = Dataset()
    record.OffsetOfTheNextDirectoryRecord = 0
    record.RecordInUseFlag = 0xFFFF
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    record.DirectoryRecordType = kind
    for keyword, value in keys:
        setattr(record, keyword, value)
    return record


def _record_type(sop_class_uid):
    # The record type PS3.3 F.5 gives the SOP class (IMAGE for images, SR
    # DOCUMENT for reports...); pydicom keeps that table.
    from pydicom.fileset import _four_level_record_type  # noqa: PLC0415

    probe = Dataset()
    probe.SOPClassUID = sop_class_uid
    try:
        return _four_level_record_type(probe)
    except ValueError:
        return "IMAGE"


def build_dicomdir(files):
    """The DICOMDIR (PS3.10 Basic Directory) of media entries, as bytes."""
    tree = []  # [(patient record, [(study record, [(series record, [image records])])])]
    index = {}
    for entry in files:
        p, st, se = entry.patient, entry.study, entry.series
        patient_key = (p.get("PatientID", ""), p.get("PatientName", ""))
        if patient_key not in index:
            node = (_record("PATIENT", [("PatientID", p.get("PatientID", "")),
                                        ("PatientName", p.get("PatientName", ""))]), [])
            index[patient_key] = node
            tree.append(node)
        patient = index[patient_key]
        study_key = patient_key + (st.get("StudyInstanceUID", ""),)
        if study_key not in index:
            node = (_record("STUDY", [("StudyDate", st.get("StudyDate", "")), ("StudyTime", st.get("StudyTime", "")),
                                      ("StudyDescription", st.get("StudyDescription", "")),
                                      ("StudyInstanceUID", st.get("StudyInstanceUID", "")),
                                      ("StudyID", st.get("StudyID", "")),
                                      ("AccessionNumber", st.get("AccessionNumber", ""))]), [])
            index[study_key] = node
            patient[1].append(node)
        study = index[study_key]
        series_key = study_key + (se.get("SeriesInstanceUID", ""),)
        if series_key not in index:
            node = (_record("SERIES", [("Modality", se.get("Modality", "") or "OT"),
                                       ("SeriesInstanceUID", se.get("SeriesInstanceUID", "")),
                                       ("SeriesNumber", se.get("SeriesNumber", "") or None)]), [])
            index[series_key] = node
            study[1].append(node)
        image = _record(_record_type(entry.sop_class_uid), [
            ("ReferencedFileID", entry.path.split("/")),
            ("ReferencedSOPClassUIDInFile", entry.sop_class_uid),
            ("ReferencedSOPInstanceUIDInFile", entry.sop_instance_uid),
            ("ReferencedTransferSyntaxUIDInFile", entry.transfer_syntax_uid),
            ("InstanceNumber", entry.instance.get("InstanceNumber", "") or None),
        ])
        index[series_key][1].append((image, []))

    def walk(nodes):
        for node in nodes:
            yield node
            yield from walk(node[1])

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    ds.file_meta.MediaStorageSOPInstanceUID = _uid_for(files)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.FileSetID = ""
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    ds.DirectoryRecordSequence = []

    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, ds.file_meta, enforce_standard=True)
    write_dataset(out, ds[:0x00041220])
    # Records are encoded with fixed-size offsets: their lengths do not depend
    # on the offset values, so the offsets can be computed before writing.
    offset = out.tell() + 12  # the sequence's tag, VR, reserved bytes and length
    offsets = {}
    for node in walk(tree):
        offsets[id(node)] = offset
        encoded = DicomBytesIO()
        encoded.is_little_endian, encoded.is_implicit_VR = True, False
        write_dataset(encoded, node[0])
        offset += 8 + encoded.tell()

    def link(nodes):
        for position, node in enumerate(nodes):
            record = node[0]
            record.OffsetOfTheNextDirectoryRecord = offsets[id(nodes[position + 1])] if position + 1 < len(nodes) else 0
            record.OffsetOfReferencedLowerLevelDirectoryEntity = offsets[id(node[1][0])] if node[1] else 0
            link(node[1])

    link(tree)
    ds.DirectoryRecordSequence = [node[0] for node in walk(tree)]
    if tree:
        ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = offsets[id(tree[0])]
        ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = offsets[id(tree[-1])]
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, ds.file_meta, enforce_standard=True)
    write_dataset(out, ds)
    return out.getvalue()


def _uid_for(files):
    return generate_uid(entropy_srcs=[e.sop_instance_uid for e in files] or None)
