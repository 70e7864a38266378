"""QIDO-RS answers build their attributes from the index's text without a pydicom
element for the common cases: the JSON must be exactly what pydicom's gives."""

import json
import logging
import warnings

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement

from api.dicomweb import element_json
from api.dicomweb.qido import COMPUTED, _attribute, _returnable
from archive.models import Level
from tests.dicomgen import pydicom_test_files

ODD_TEXTS = ["", " ", "A", " a b ", "A\\B", "A\\", "\\", "1.2.3", " 1.2.3", "1.2.3 ", "1.2.3\x00", "1.2\t",
             "007", "-0", "+7", " 7 ", "2147483648", "65535", "65536", "-1", "1.5", "1e3", "NaN",
             "A^B", "A^B^", "A^^", " A ", "Yamada^Tarou=山田^太郎=やまだ^たろう", "MÜLLER^JÜRGEN", "20200101",
             "20200101 ", "101010.5", "bad", "040Y", "+0100", "http://x/y z", "ONLINE", "a\x00", "é" * 70]


def _pydicom_json(keyword, text):
    vr = dictionary_VR(keyword)
    try:
        element = DataElement(tag_for_keyword(keyword), vr, text)
    except (ValueError, TypeError, OverflowError):
        return "unparsed"
    try:
        element.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=0)
    except IndexError:  # pydicom fails on an empty name among names
        return "pydicom fails"
    except (ValueError, TypeError, OverflowError):
        pass  # element_json keeps the text
    return element_json(element)


def _keywords():
    keywords = {"RetrieveURL", "InstanceAvailability"}
    for level in (Level.STUDY, Level.SERIES, Level.INSTANCE):
        keywords |= _returnable(level) | COMPUTED[level]
    return sorted(keywords)


def _texts_of_test_files(keywords):
    """The values of these keywords in pydicom's test files, as the index keeps them."""
    texts = {}
    for path in pydicom_test_files():
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:
            continue
        for keyword in keywords:
            element = dataset.data_element(keyword) if keyword in dataset else None
            if element is None or element.VR == "SQ":
                continue
            value = element.value
            text = "\\".join(str(v) for v in value) if element.VM > 1 else str(value if value is not None else "")
            texts.setdefault(keyword, set()).add(text)
    return texts


def test_every_attribute_equals_pydicoms_json():
    keywords = _keywords()
    from_files = _texts_of_test_files(keywords)
    compared, failed = 0, []
    logging.disable(logging.CRITICAL)  # pydicom and the unparsed path warn on bad values
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for keyword in keywords:
                for text in ODD_TEXTS + sorted(from_files.get(keyword, ())):
                    expected = _pydicom_json(keyword, text)
                    if expected == "unparsed":
                        continue  # pydicom refuses it: _attribute's own fallback answers
                    if expected == "pydicom fails":
                        failed.append((keyword, text))
                        continue
                    answer = _attribute(tag_for_keyword(keyword), dictionary_VR(keyword), text)
                    assert json.dumps(answer) == json.dumps(expected), (keyword, text)  # NaN equals itself there
                    compared += 1
    finally:
        logging.disable(logging.NOTSET)
    assert len(keywords) > 30 and compared > 1500
    # Where pydicom fails (an empty name among names), the answer is still DICOM JSON: null for it (F.2.5).
    assert ("ReferringPhysicianName", "A\\") in failed
    for keyword, text in failed:
        assert dictionary_VR(keyword) == "PN"
        values = _attribute(tag_for_keyword(keyword), dictionary_VR(keyword), text)["Value"]
        assert [v is None for v in values] == [not name for name in text.split("\\")], (keyword, text)


def test_a_study_with_an_empty_name_among_its_physicians_is_found_and_described(client, admin_user):
    from tests.dicomgen import make_instance
    from archive import ingest

    ingest.store(make_instance(study_uid="1.2.3.77", ReferringPhysicianName=["SMITH^ANNE", ""]),
                 ingest.Origin.http("127.0.0.1", "admin"))
    client.force_login(admin_user)
    response = client.get("/dicom-web/studies?StudyInstanceUID=1.2.3.77", HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200
    assert response.json()[0]["00080090"] == {"vr": "PN", "Value": [{"Alphabetic": "SMITH^ANNE"}, None]}
    # The stored file's own element, as WADO-RS metadata gives it to a viewer.
    response = client.get("/dicom-web/studies/1.2.3.77/metadata", HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200
    assert json.loads(b"".join(response.streaming_content))[0]["00080090"] == {"vr": "PN", "Value": [{"Alphabetic": "SMITH^ANNE"}, None]}
