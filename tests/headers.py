"""A corpus of Part 10 files for comparing a reading of headers with pydicom's: every
file pydicom ships, its character set files, the hostile corpus, and generated
variations (character sets, multiple values, implicit VR, sequences nested to the
limit and past it, odd VRs, compressed and deflated files, cuts)."""

import io
import struct

from pydicom.data import get_charset_files
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

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


def files():
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
