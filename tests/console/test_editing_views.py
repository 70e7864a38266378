"""The console's labels, modify and anonymize dialogs, in process: what changes is shown
before it runs, it runs as a job, the study page links to the result."""

import pytest
from django.contrib.auth.models import Group

from archive.models import Label, Study
from archive.roles import ROLES
from cluster import jobs
from cluster.models import Job
from tests.dicomgen import make_instance

# The jobs run in this thread and close its connection, as every job run does: the
# database cannot be one test transaction.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def role_groups(db):
    # A transactional test's database is flushed between tests, the roles' groups with it.
    for role in ROLES:
        Group.objects.get_or_create(name=role)


@pytest.fixture
def study(admin):
    response = admin.post("/ui/upload/file", data=make_instance(patient_id="CONSOLE-EDIT", patient_name="SHOWN^NAME"),
                          content_type="application/octet-stream", HTTP_X_FILE_NAME="one.dcm")
    assert response.status_code == 200, response.content
    return Study.objects.get(patient__patient_id="CONSOLE-EDIT").public_id


def test_labels_are_added_removed_and_searched(admin, as_role, study):
    assert admin.post(f"/ui/studies/{study}/labels", {"name": "cohort-7"}).status_code == 302
    page = admin.get(f"/ui/studies/{study}/").content.decode()
    assert "cohort-7" in page and 'id="add-label"' in page
    assert admin.get("/ui/studies/?label=cohort-7").content.decode().count(f"/ui/studies/{study}/") >= 1
    assert f"/ui/studies/{study}/" not in admin.get("/ui/studies/?label=other").content.decode()
    admin.post(f"/ui/studies/{study}/labels", {"name": "bad label"})
    assert list(Label.objects.values_list("name", flat=True)) == ["cohort-7"]
    assert as_role("viewer").post(f"/ui/studies/{study}/labels", {"name": "x"}).status_code == 403
    admin.post(f"/ui/studies/{study}/labels", {"remove": "cohort-7"})
    assert not Label.objects.exists()


def test_anonymize_dialog_shows_what_changes_then_runs_a_job(admin, as_role, study):
    dialog = admin.get(f"/ui/studies/{study}/anonymize").content.decode()
    assert "SHOWN^NAME" in dialog and "replaced by a generated name" in dialog
    assert "General Hospital" in dialog and "removed" in dialog  # InstitutionName
    assert as_role("viewer").get(f"/ui/studies/{study}/anonymize").status_code == 403
    response = admin.post(f"/ui/studies/{study}/anonymize", {"keep_source": "on", "patient_name": "COHORT^001"})
    assert response.status_code == 302 and "?job=" in response["Location"]
    job = Job.objects.get(type="ResourceModification")
    jobs.execute(job.id, from_queue=False)
    page = admin.get(response["Location"]).content.decode()
    result = Job.objects.get(pk=job.id).content["ID"]
    assert f'href="/ui/studies/{result}/"' in page and "Open the result" in page
    assert Study.objects.get(public_id=result).patient.main_dicom_tags["PatientName"] == "COHORT^001"


def test_modify_dialog_changes_only_what_was_edited(admin, study):
    dialog = admin.get(f"/ui/studies/{study}/modify").content.decode()
    assert 'value="SHOWN^NAME"' in dialog
    response = admin.post(f"/ui/studies/{study}/modify", {"PatientName": "FIXED^NAME", "PatientID": "CONSOLE-EDIT",
                                                         "StudyDescription": "CT CHEST"})
    job = Job.objects.get(type="ResourceModification")
    assert job.params["edit"]["replace"] == {"00100010": "FIXED^NAME"} and job.params["edit"]["keep_source"] is False
    jobs.execute(job.id, from_queue=False)
    assert Job.objects.get(pk=job.id).state == "Success", Job.objects.get(pk=job.id).error_details
    assert response.status_code == 302
    assert not Study.objects.filter(public_id=study).exists()  # "Keep the original" was unticked


def test_bulk_bar_labels_and_anonymizes_the_ticked_studies(admin, as_role, study):
    other = admin.post("/ui/upload/file", data=make_instance(patient_id="CONSOLE-BULK"),
                       content_type="application/octet-stream", HTTP_X_FILE_NAME="two.dcm")
    assert other.status_code == 200
    both = [study, Study.objects.get(patient__patient_id="CONSOLE-BULK").public_id]
    listing = admin.get("/ui/studies/").content.decode()
    assert 'id="bulk-label-button"' in listing and 'id="bulk-anonymize"' in listing
    assert 'id="bulk-anonymize"' not in as_role("viewer").get("/ui/studies/").content.decode()
    admin.post("/ui/studies/bulk/label", {"study": both, "label": "batch-1"})
    assert sorted(Label.objects.values_list("resource_id", flat=True)) == sorted(both)
    response = admin.post("/ui/studies/bulk/anonymize", {"study": both})
    assert response.status_code == 302 and response["Location"] == "/ui/jobs/?type=ResourceModification"
    job = Job.objects.get(type="ResourceModification")
    assert job.params["kind"] == "bulk" and len(job.params["instances"]) == 2 and job.params["edit"]["anonymize"]
    jobs.execute(job.id, from_queue=False)
    assert Job.objects.get(pk=job.id).state == "Success"
    assert Study.objects.count() == 4
    assert admin.post("/ui/studies/bulk/label", {"label": "x"}).status_code == 302  # nothing ticked


def test_patient_dialogs_edit_every_study_of_the_patient(admin, study):
    patient = Study.objects.get(public_id=study).patient.public_id
    page = admin.get(f"/ui/patients/{patient}/").content.decode()
    assert 'id="anonymize-patient"' in page and 'id="modify-patient"' in page
    dialog = admin.get(f"/ui/patients/{patient}/modify").content.decode()
    assert 'name="PatientID"' in dialog and 'name="StudyDescription"' not in dialog
    # Orthanc's rule: a modified patient needs a new PatientID.
    refused = admin.post(f"/ui/patients/{patient}/modify", {"PatientName": "ONLY^NAME"}, follow=True)
    assert "PatientID is required" in refused.content.decode()
    response = admin.post(f"/ui/patients/{patient}/anonymize", {"keep_source": "on"})
    assert response["Location"] == "/ui/jobs/?type=ResourceModification"
    job = Job.objects.get(type="ResourceModification")
    assert job.params["level"] == "Patient"
    jobs.execute(job.id, from_queue=False)
    listing = admin.get("/ui/jobs/").content.decode()
    result = Job.objects.get(pk=job.id).content["ID"]
    assert f'href="/ui/patients/{result}/"' in listing
