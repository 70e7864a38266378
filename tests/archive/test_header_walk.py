"""archive.header reads a file's header as pydicom does, or leaves it to pydicom: on
every file pydicom ships, on the hostile corpus and on generated variations, what
ingest makes of the walked header equals what it makes of pydicom's reading (the
same ParsedInstance, or the same refusal)."""

import io
import struct

import pytest
from pydicom.data import get_charset_files
from pydicom.uid import ImplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless

from archive import header, ingest
from archive.errors import ArchiveError
from tests import hostile
from tests.dicomgen import make_instance, make_ultrasound_jpeg, pydicom_test_files, uid


def _nested(depth, defined=False):
    """An instance with a ContentSequence nested `depth` deep, spliced before its pixel data."""
    data = make_instance(patient_id="NEST", sop_uid=uid("walk", "nest", depth, defined))
    inner = b"\x08\x00\x00\x01SH\x02\x00X "
    for _ in range(depth):
        if defined:
            item = b"\xfe\xff\x00\xe0" + struct.pack("<I", len(inner)) + inner
            inner = b"\x40\x00\x30\xa7SQ\x00\x00" + struct.pack("<I", len(item)) + item
        else:
            inner = (b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff" + inner
                     + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    pixels = data.rfind(b"\xe0\x7f\x10\x00")
    return data[:pixels] + inner + data[pixels:]


def _implicit(**extra):
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(make_instance(sop_uid=uid("walk", "implicit", len(extra)), **extra)))
    dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    out = io.BytesIO()
    dataset.save_as(out, implicit_vr=True, little_endian=True, enforce_file_format=True)
    return out.getvalue()


def _rle():
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(make_instance(sop_uid=uid("walk", "rle"))))
    dataset.compress(RLELossless)
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _patched(data, find, replace):
    assert find in data
    return data.replace(find, replace, 1)


def _files():
    files = [(path.rsplit("/", 1)[-1], open(path, "rb").read()) for path in pydicom_test_files()]
    files += [(path.rsplit("/", 1)[-1], open(path, "rb").read()) for path in get_charset_files("*.dcm")]
    files += [(name, data) for name, data, _ in hostile.corpus() if data]
    plain = make_instance(sop_uid=uid("walk", "plain"))
    files += [
        ("plain", plain),
        ("latin-1", make_instance(patient_name="Müller^Jürgen", study_description="Épaule")),
        ("utf-8", make_instance(patient_name="Øre^Ålborg", SpecificCharacterSet="ISO_IR 192")),
        ("iso-2022", make_instance(patient_name="Yamada^Tarou", SpecificCharacterSet=["", "ISO 2022 IR 87"])),
        ("no-charset", make_instance(patient_name="Smith^J", omit=["SpecificCharacterSet"])),
        ("multi-valued", make_instance(ImageOrientationPatient=[1, 0, 0, 0, 0.70710678, -0.70710678],
                                       OtherPatientIDs=["A1", " B2 ", ""])),
        ("no-sop-class", make_instance(omit=["SOPClassUID"])),
        ("patient-id-65", make_instance(patient_id="P" * 65)),
        ("frame-too-large", make_instance(Rows=60000, Columns=60000, SamplesPerPixel=3)),
        ("implicit", _implicit()),
        ("implicit-sequence", _implicit(ReferencedStudySequence=[_item()])),
        ("sequence", make_instance(ReferencedStudySequence=[_item(), _item()])),
        ("nested-64-undefined", _nested(64)),
        ("nested-65-undefined", _nested(65)),
        ("nested-64-defined", _nested(64, defined=True)),
        ("nested-65-defined", _nested(65, defined=True)),
        ("rle", _rle()),
        ("jpeg-multiframe", make_ultrasound_jpeg(frames=3, size=32)),
        ("empty-patient-name", make_instance(patient_name="")),
        ("nul-in-name", _patched(plain, b"DOE^JANE", b"DOE\0JANE")),
        ("unknown-vr", _patched(plain, b"\x10\x00\x20\x00LO", b"\x10\x00\x20\x00ZZ")),
        ("lowercase-vr", _patched(plain, b"\x10\x00\x20\x00LO", b"\x10\x00\x20\x00lo")),
        ("patient-id-as-un", _patched(plain, b"\x10\x00\x20\x00LO\x0a\x00", b"\x10\x00\x20\x00UN\x00\x00\x0a\x00\x00\x00")),
        ("name-with-groups", make_instance(patient_name="Yamada^Tarou=山田^太郎")),
        ("deflated", _deflated()),
    ]
    for cut in (133, 140, 300, 600, len(plain) - 1):
        files.append((f"cut-at-{cut}", plain[:cut]))
    return files


def _item():
    from pydicom.dataset import Dataset

    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    item.ReferencedSOPInstanceUID = uid("walk", "ref")
    return item


def _deflated():
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    dataset = pydicom.dcmread(io.BytesIO(make_instance(sop_uid=uid("walk", "deflated"))))
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _outcome(read):
    try:
        return "stored", read()
    except ArchiveError as error:
        return "refused", type(error).__name__, str(error)


FILES = _files()


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
