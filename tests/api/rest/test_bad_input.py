"""Bad input gets a 4xx naming the problem, and nothing of it is written."""

import io
import zipfile

import pytest

from tests.storing import post_instance
from tests.dicomgen import make_instance


def snapshot(api, storage_dir):
    files = sorted(p.name for p in storage_dir.rglob("*") if p.is_file())
    return api.get("/statistics").json(), files


@pytest.mark.parametrize(
    "body, words",
    [
        (make_instance(rows=128, columns=128)[:9000], "truncated"),
        (make_instance()[:-7], "truncated"),
        (b"this is a plain text file, not an image\n" * 10, "not a DICOM"),
        (make_instance(omit=["SOPInstanceUID"]), "SOPInstanceUID"),
        (make_instance(omit=["StudyInstanceUID"]), "StudyInstanceUID"),
        (b"", "empty"),
        (make_instance(sop_uid="1.2.3/../../etc"), "not a valid UID"),
        (make_instance(sop_uid="1." + "2" * 70), "not a valid UID"),
    ],
    ids=["truncated-in-pixels", "truncated-at-end", "not-dicom", "no-sop-uid", "no-study-uid", "empty",
         "uid-path-chars", "uid-too-long"],
)
def test_bad_body_is_refused_with_reason_and_nothing_written(api, storage_dir, body, words):
    post_instance(api, make_instance(patient_id="KEEP"))
    before = snapshot(api, storage_dir)
    response = post_instance(api, body)
    assert response.status_code == 400
    assert words.lower() in response.json()["Details"].lower()
    assert snapshot(api, storage_dir) == before


def test_known_sop_uid_under_another_patient_is_refused(api, storage_dir):
    post_instance(api, make_instance(patient_id="ONE", sop_uid="1.2.3.4.5"))
    before = snapshot(api, storage_dir)
    response = post_instance(api, make_instance(patient_id="TWO", sop_uid="1.2.3.4.5"))
    assert response.status_code == 409
    assert "already stored under another" in response.json()["Details"]
    assert snapshot(api, storage_dir) == before


def test_zip_with_one_bad_member_stores_the_good_ones_and_names_the_bad(api, storage_dir):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("good1.dcm", make_instance(instance_number=1))
        archive.writestr("bad.dcm", make_instance(sop_uid="1.2.3/../../etc"))
        archive.writestr("good2.dcm", make_instance(instance_number=2))
    response = api.generic("POST", "/instances", buffer.getvalue(), content_type="application/zip")
    assert response.status_code == 400
    answers = response.json()
    assert [a["Status"] for a in answers] == ["Success", "Failure", "Success"]
    assert answers[1]["Member"] == "bad.dcm"
    assert "not a valid UID" in answers[1]["Details"]
    stats, files = snapshot(api, storage_dir)
    assert stats["CountInstances"] == 2
    assert len([f for f in files if not f.endswith(".part")]) == 2


def test_corrupt_zip_is_refused(api, storage_dir):
    body = b"PK\x03\x04" + b"\x00" * 64
    response = post_instance(api, body)
    assert response.status_code == 400
    assert "ZIP" in response.json()["Details"]
    assert snapshot(api, storage_dir)[0]["CountInstances"] == 0


def test_oversized_body_is_refused_before_reading(api, settings):
    settings.MAX_UPLOAD_BYTES = 1000
    response = post_instance(api, make_instance())
    assert response.status_code == 413
