"""Names inside downloaded ZIPs and media come from DICOM text any sender chose:
each path component is safe, unique and readable."""

import io
import re
import zipfile

import pydicom
from pydicom.fileset import FileSet

from archive import archives, ingest
from tests.dicomgen import make_instance, uid

UPLOAD = ingest.Origin.dicom("HOSTILE", "127.0.0.1")
SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9 ._-]*$")

HOSTILE = [
    # patient id, patient name, accession number, study description, modality, series description
    ("..", "", "..", "", "..", ""),
    ("../../etc", "..^..", "/abs", "C:\\Windows\\", "./", "..\\..\\"),
    ("A\x00B\x1bC", "NUL\x07", "tab\there", "new\nline", "C\rT", "\x7f"),
    (" . ", "...", " ... ", ". .", "..", "  "),
    ("SAME", "Name", "ACC", "x", "CT", "y"),
    ("same", "NAME", "acc", "X", "CT", "Y"),  # differs only in case: must not collide on Windows/macOS
    ("É", "ÄÖÜ^日本", "Ω", "✓", "MR", "ß" * 300),
    ("L" * 60, "M" * 200, "A" * 16, "D" * 200, "OT", "S" * 200),
]


def _store_hostile():
    for n, (patient_id, name, accession, study, modality, series) in enumerate(HOSTILE):
        ingest.store(make_instance(patient_id=patient_id, patient_name=name, accession_number=accession,
                                   study_description=study, modality=modality, series_description=series,
                                   study_uid=uid("names", n), rows=8, columns=8), UPLOAD)


def _all_resources():
    from archive.models import Patient
    return list(Patient.objects.values_list("public_id", flat=True))


def test_zip_entry_names_from_hostile_tags_are_safe_unique_and_readable(db, storage_dir):
    _store_hostile()
    body = b"".join(archives.stream_zip(archives.entries(_all_resources())))
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert len(names) == len(HOSTILE)
    for name in names:
        parts = name.split("/")
        assert len(parts) == 4, name
        for part in parts:
            assert SAFE.match(part) and part.strip(" .") == part and len(part) <= 70, (name, part)
            assert part not in (".", "..")
    assert len({name.casefold() for name in names}) == len(names)
    folders = {name.rsplit("/", 3)[0] for name in names}
    assert any(folder.startswith("Unknown Patient") for folder in folders)  # nothing left of ".."
    assert "SAME Name" in folders and "same NAME-2" in folders
    # Readable: what was printable ASCII stays.
    assert any(name.startswith("AB C NUL/") or name.startswith("ABC NUL/") for name in names), names


def test_media_of_hostile_resources_has_a_dicomdir_that_pydicom_reads(db, storage_dir, tmp_path):
    _store_hostile()
    body = b"".join(archives.stream_zip(archives.entries(_all_resources(), media=True), media=True))
    media = tmp_path / "media"
    zipfile.ZipFile(io.BytesIO(body)).extractall(media)
    names = sorted(p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file())
    assert names[0] == "DICOMDIR" and all(re.match(r"^IMAGES/IM\d+$", n) for n in names[1:]), names
    fileset = FileSet(pydicom.dcmread(media / "DICOMDIR"))
    assert len(fileset) == len(HOSTILE)
