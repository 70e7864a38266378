"""The console's searches find names as people type them (archive.query.Typed), quick
date ranges, priors on the study page, readable dates, and bulk actions on ticked studies."""

import datetime
import io
import zipfile

import pytest
from django.utils import timezone

from archive import query
from archive.models import AuditEvent, Level, Study
from console.templatetags.console import dicom_date, dicom_time
from tests.console.phantom import ct_series
from tests.console.test_console_views import store
from tests.console.test_worklist import schedule

TYPED = ["Doe, John", "DOE^JOHN", "john doe", "john", "doe jo", "  DOE ,  JOHN "]
ACCENTED = ["muller", "Müller^Jürgen", "jurgen muller", "MULLER, JÜRGEN"]
NOBODY = ["jane", "ohn", "doe^johnny", "smith john"]


def day(offset=0):
    return timezone.localdate() - datetime.timedelta(days=offset)


@pytest.fixture
def studies(admin):
    for tag, name, offset, patient in (("t1", "DOE^JOHN", 0, "P1"), ("t2", "MÜLLER^JÜRGEN", 1, "P2"),
                                       ("t3", "SMITH^ANNA", 6, "P3"), ("t4", "DOE^JOHN", 20, "P1"),
                                       ("t5", "ROE^RICHARD", 40, "P5")):
        for data in ct_series(tag, 1, patient_name=name, patient_id=patient,
                              study_date=day(offset).strftime("%Y%m%d"), study_description=f"CT {tag}"):
            assert store(admin, data)[0]["status"] == "Stored"
    return admin


def names(response):
    assert response.status_code == 200
    if "page" in response.context:
        return {m.values["PatientName"] for m in response.context["page"].matches}
    return {item.patient_name for item in response.context["items"]}


@pytest.mark.parametrize("path", ["/ui/studies/", "/ui/patients/", "/ui/worklist/"])
def test_every_name_box_finds_names_as_people_type_them(admin, studies, path):
    schedule("W1", "DOE^JOHN", "P1")
    schedule("W2", "MÜLLER^JÜRGEN", "P2")
    for typed in TYPED:
        assert names(admin.get(path, {"patient_name": typed})) == {"DOE^JOHN"}, typed
    for typed in ACCENTED:
        assert names(admin.get(path, {"patient_name": typed})) == {"MÜLLER^JÜRGEN"}, typed
    for typed in NOBODY:
        assert names(admin.get(path, {"patient_name": typed})) == set(), typed
    # A pattern is still a DICOM pattern.
    assert names(admin.get(path, {"patient_name": "*OE^J*"})) == {"DOE^JOHN"}
    assert names(admin.get(path, {"patient_name": "john*"})) == set()


def test_dicom_matching_keeps_its_meaning_for_the_network_transports(studies):
    def found(value):
        page = query.find_page(query.Query(level=Level.STUDY, criteria={"PatientName": value}), ("PatientName",))
        return {m.values["PatientName"] for m in page.matches}

    assert found("john") == set() and found("doe^john") == {"DOE^JOHN"}
    assert found(query.Typed("john")) == {"DOE^JOHN"}


@pytest.mark.parametrize("period, expected", [
    ("today", {"t1"}), ("yesterday", {"t2"}), ("7d", {"t1", "t2", "t3"}), ("30d", {"t1", "t2", "t3", "t4"}),
    ("", {"t1", "t2", "t3", "t4", "t5"}),
])
def test_quick_date_ranges(studies, period, expected):
    response = studies.get("/ui/studies/", {"period": period})
    assert {m.values["StudyDescription"][3:] for m in response.context["page"].matches} == expected


def test_study_page_lists_the_priors_of_the_same_patient(studies):
    current = Study.objects.get(main_dicom_tags__StudyDescription="CT t1")
    prior = Study.objects.get(main_dicom_tags__StudyDescription="CT t4")
    content = studies.get(f"/ui/studies/{current.public_id}/").content.decode()
    assert f'data-prior="{prior.public_id}"' in content and day(20).isoformat() in content
    assert content.count("data-prior=") == 1  # not itself, nor another patient's


def test_dates_and_times_read_the_same_in_every_form():
    assert dicom_date("19941105") == dicom_date("1994.11.05") == "1994-11-05"
    assert dicom_time("101500.123") == dicom_time("10:15:00.123") == "10:15:00"
    assert dicom_date("") == "—"


def test_bulk_download_of_two_studies_is_one_zip(studies):
    ids = list(Study.objects.filter(main_dicom_tags__StudyDescription__in=["CT t1", "CT t2"])
               .values_list("public_id", flat=True))
    response = studies.post("/ui/studies/bulk/download", {"study": ids})
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    members = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
    assert len(members) == 2 and len({m.split("/")[0] for m in members}) == 2
    assert AuditEvent.objects.filter(action="export", resource__in=ids).count() == 2


def test_bulk_delete_asks_naming_the_studies_then_deletes_them(studies, as_role):
    ids = list(Study.objects.filter(main_dicom_tags__StudyDescription__in=["CT t3", "CT t5"])
               .values_list("public_id", flat=True))
    assert as_role("viewer").post("/ui/studies/bulk/delete", {"study": ids}).status_code == 403
    response = studies.post("/ui/studies/bulk/delete", {"study": ids})
    assert response.status_code == 200 and b"SMITH, ANNA" in response.content and b"ROE, RICHARD" in response.content
    assert Study.objects.count() == 5
    response = studies.post("/ui/studies/bulk/delete", {"study": ids, "confirm": "yes", "next": "/ui/studies/"})
    assert response.status_code == 302 and Study.objects.count() == 3
    response = studies.post("/ui/studies/bulk/delete", {"study": []}, follow=True)
    assert b"Tick the studies first" in response.content


def test_bulk_send_is_one_job_for_the_ticked_studies(studies, as_role):
    from archive.models import Modality
    from cluster.models import Job

    Modality.objects.create(name="ct9", aet="CT9", host="127.0.0.1", port=104)
    ids = list(Study.objects.filter(main_dicom_tags__StudyDescription__in=["CT t1", "CT t2"])
               .values_list("public_id", flat=True))
    assert as_role("viewer").post("/ui/studies/bulk/send", {"study": ids, "target": "modality:ct9"}).status_code == 403
    response = studies.post("/ui/studies/bulk/send", {"study": ids, "target": "modality:ct9"})
    assert response.status_code == 302 and response["Location"] == "/ui/jobs/"
    job = Job.objects.get()
    assert job.type == "DicomModalityStore" and len(job.params["instances"]) == 2
    assert AuditEvent.objects.filter(action="send").count() == 2
    response = studies.post("/ui/studies/bulk/send", {"study": ids, "target": ""}, follow=True)
    assert b"Choose where to send" in response.content and Job.objects.count() == 1
