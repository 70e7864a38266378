"""A corpus of hostile DICOM input: files a broken or malicious sender could send.

Each entry is a name, the bytes of a Part 10 file (or what pretends to be one), and
words the refusal must contain. Built from generated instances so the corpus is
reproducible and small; the test modules send it through REST, STOW-RS and C-STORE.
"""

import io
import struct

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.dicomgen import make_instance, uid


def _bytes(ds):
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _nested(depth):
    ds = pydicom.dcmread(io.BytesIO(make_instance(patient_id="HOSTILE-NEST", sop_uid=uid("hostile", "nest"))))
    inner = Dataset()
    inner.CodeValue = "X"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    ds.ContentSequence = Sequence([inner])
    return _bytes(ds)


def _length_past_the_end():
    data = bytearray(make_instance(patient_id="HOSTILE-LEN", sop_uid=uid("hostile", "len")))
    # The PatientName element (0010,0010), explicit VR "PN": make its 2-byte length
    # claim more bytes than the whole file holds... and the pixel data's 4-byte one too.
    at = data.find(b"\x10\x00\x10\x00PN")
    struct.pack_into("<H", data, at + 6, 0xFFF0)
    return bytes(data)


def _pixel_length_past_the_end():
    data = bytearray(make_instance(patient_id="HOSTILE-PIX", sop_uid=uid("hostile", "pix")))
    at = data.rfind(b"\xe0\x7f\x10\x00")
    struct.pack_into("<I", data, at + 8, 0x7FFFFFF0)
    return bytes(data)


def corpus():
    return [
        ("truncated-in-pixels", make_instance(rows=128, columns=128, sop_uid=uid("hostile", "t1"))[:9000],
         "truncated"),
        ("truncated-at-end", make_instance(sop_uid=uid("hostile", "t2"))[:-7], "truncated"),
        ("not-dicom", b"\x89PNG\r\n\x1a\n" + b"\x00" * 500, "not a DICOM"),
        ("empty", b"", "empty"),
        ("no-sop-instance-uid", make_instance(omit=["SOPInstanceUID"]), "SOPInstanceUID"),
        ("uid-with-path-characters", make_instance(sop_uid="1.2.3/../../etc/passwd"), "not a valid UID"),
        ("uid-over-64-characters", make_instance(sop_uid="1." + "2" * 70), "not a valid UID"),
        ("element-longer-than-the-file", _length_past_the_end(), ""),
        ("pixel-data-longer-than-the-file", _pixel_length_past_the_end(), "truncated"),
        ("sequences-nested-300-deep", _nested(300), "nested"),
        # The SOP Instance UID of the seed instance, under another patient and study.
        ("known-uid-under-another-patient", make_instance(patient_id="HOSTILE-OTHER", sop_uid=SEED_UID,
                                                          study_uid=uid("hostile", "other-study")), "already"),
    ]


SEED_UID = uid("hostile", "seed")


def seed():
    """The instance stored before the corpus is sent (the conflict entry reuses its UID)."""
    return make_instance(patient_id="HOSTILE-SEED", sop_uid=SEED_UID)
