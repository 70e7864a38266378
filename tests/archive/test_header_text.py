"""The main tags read from an element's bytes equal pydicom's conversion of them, on
every real-world file pydicom ships and on the hostile corpus."""

import io

import pydicom
import pytest
from pydicom.data import get_charset_files

from archive import ingest, tags
from tests import hostile
from tests.dicomgen import make_instance, pydicom_test_files

KEYWORDS = tags.PATIENT_TAGS + tags.STUDY_TAGS + tags.SERIES_TAGS + tags.INSTANCE_TAGS + ("SOPClassUID",)


def _read(data):
    return pydicom.dcmread(io.BytesIO(data), defer_size=ingest.DEFER_SIZE, force=True)


def _files():
    files = [(path.rsplit("/", 1)[-1], open(path, "rb").read()) for path in pydicom_test_files()]
    files += [(name, data) for name, data, _ in hostile.corpus() if data]
    # pydicom's character set files: ISO 2022 escapes, Japanese, Korean, Chinese...
    files += [(path.rsplit("/", 1)[-1], open(path, "rb").read()) for path in get_charset_files("*.dcm")]
    files += [
        ("latin-1", make_instance(patient_name="Müller^Jürgen", study_description="Épaule")),
        ("utf-8", make_instance(patient_name="Øre^Ålborg", SpecificCharacterSet="ISO_IR 192")),
        ("no-charset", make_instance(patient_name="Smith^J", omit=["SpecificCharacterSet"])),
        ("multi-valued", make_instance(ImageOrientationPatient=[1, 0, 0, 0, 0.70710678, -0.70710678],
                                       OtherPatientIDs=["A1", " B2 ", ""])),
    ]
    return files


@pytest.mark.parametrize("name,data", _files(), ids=lambda value: value if isinstance(value, str) else "")
def test_raw_text_equals_pydicom_conversion(name, data):
    try:
        fast, reference = _read(data), _read(data)
        expected = {}
        for keyword in KEYWORDS:
            tag = tags._TAGS[keyword]
            expected[keyword] = tags.converted_text(reference, tag) if tag in reference else None
    except Exception:
        pytest.skip("pydicom itself cannot read it (the ingest path refuses it)")
    assert {keyword: tags.element_text(fast, keyword) for keyword in KEYWORDS} == expected
