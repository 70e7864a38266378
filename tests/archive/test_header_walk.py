"""archive.header reads a file's header as pydicom does, or leaves it to pydicom: on
every file pydicom ships, on the hostile corpus and on generated variations, what
ingest makes of the walked header equals what it makes of pydicom's reading (the
same ParsedInstance, or the same refusal)."""

import io

import pytest
from pydicom.uid import ImplicitVRLittleEndian, JPEGBaseline8Bit

from archive import header, ingest
from archive.errors import ArchiveError
from tests import headers
from tests.dicomgen import make_instance, pydicom_test_files, uid


def _outcome(read):
    try:
        return "stored", read()
    except ArchiveError as error:
        return "refused", type(error).__name__, str(error)


FILES = headers.files()


@pytest.mark.parametrize("name,data", FILES, ids=[name for name, _ in FILES])
def test_the_walked_header_gives_what_pydicom_gives(name, data):
    reference = _outcome(lambda: ingest._read(io.BytesIO(data), 0, len(data)))
    walked = _outcome(lambda: ingest._walked(data))
    if walked == ("stored", None):
        return  # left to pydicom: the reference is what ingest does
    assert walked == reference


def test_the_walk_answers_for_the_common_files_and_leaves_the_odd_ones():
    answered = {name for name, data in FILES if _outcome(lambda: ingest._walked(data)) != ("stored", None)}
    # Generated files of every common shape are read without pydicom...
    for name in ("plain", "latin-1", "utf-8", "no-charset", "multi-valued", "implicit", "implicit-sequence",
                 "sequence", "nested-64-undefined", "nested-64-defined", "rle", "jpeg-multiframe",
                 "uid-with-path-characters", "patient-id-65", "frame-too-large", "no-sop-class"):
        assert name in answered, name
    # ...as are most of pydicom's own (little endian, not deflated)...
    real = [name for name, _ in FILES[:len(pydicom_test_files())]]
    assert len([n for n in real if n in answered]) > len(real) // 2
    # ...and what pydicom must judge is left to it.
    for name in ("iso-2022", "nested-65-undefined", "nested-65-defined", "truncated-in-pixels", "truncated-at-end",
                 "element-longer-than-the-file", "pixel-data-longer-than-the-file", "sequences-nested-300-deep",
                 "nul-in-name", "unknown-vr", "lowercase-vr", "patient-id-as-un", "name-with-groups", "deflated",
                 "cut-at-140", "cut-at-300", "cut-at-600"):
        assert name not in answered, name


def test_a_file_too_large_to_hold_is_left_to_pydicom(monkeypatch):
    data = make_instance(sop_uid=uid("walk", "large"))
    monkeypatch.setattr(header, "MAX_BYTES", len(data) - 1)
    called = []
    monkeypatch.setattr(ingest, "_walked", lambda data: called.append(data))
    parsed = ingest.parse(io.BytesIO(data))
    assert parsed.sop_instance_uid == uid("walk", "large") and called == []


def test_ingest_reads_a_common_file_without_pydicom(monkeypatch):
    data = make_instance(sop_uid=uid("walk", "fast"))

    def refuse(*args, **kwargs):
        raise AssertionError("pydicom was asked to read a file the walk answers for")

    monkeypatch.setattr(ingest, "_read", refuse)
    parsed = ingest.parse(io.BytesIO(data))
    assert parsed.sop_instance_uid == uid("walk", "fast") and parsed.patient_tags["PatientName"] == "DOE^JANE"
    assert JPEGBaseline8Bit in header.EXPLICIT and ImplicitVRLittleEndian not in header.EXPLICIT
