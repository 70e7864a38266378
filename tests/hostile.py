"""A corpus of hostile DICOM input: files a broken or malicious sender could send.

Each entry is a name, the bytes of a Part 10 file (or what pretends to be one), and
words the refusal must contain. Built from generated instances so the corpus is
reproducible and small; the test modules send it through REST, STOW-RS and C-STORE.
"""

import struct

from tests.dicomgen import make_instance, uid


def _nested(depth):
    """An instance with ContentSequence items nested `depth` deep (undefined lengths),
    spliced in before its pixel data, in tag order."""
    data = make_instance(patient_id="HOSTILE-NEST", sop_uid=uid("hostile", "nest"))
    opening = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    innermost = b"\x08\x00\x00\x01SH\x02\x00X "  # CodeValue "X"
    nested = opening * depth + innermost + closing * depth
    pixels = data.rfind(b"\xe0\x7f\x10\x00")
    return data[:pixels] + nested + data[pixels:]


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
