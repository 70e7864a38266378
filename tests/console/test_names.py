"""Names instead of ids: the Jobs and Changes pages and the upload's summary name patient and study."""

import datetime

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from archive.models import Study
from cluster.models import Job, JobState
from tests.console.phantom import ct_series
from tests.console.test_console_views import store


def test_changes_name_patient_and_study_and_keep_the_id_of_what_is_gone(admin):
    store(admin, ct_series("chg", 1, patient_name="DOE^JOHN", study_description="CT NAMES")[0])
    study = Study.objects.get().public_id
    page = admin.get("/ui/changes/?level=Study").content.decode()
    assert "DOE, JOHN" in page and "2026-01-15 CT NAMES" in page
    assert f'href="/ui/open/study/{study}"' in page
    admin.post(f"/ui/studies/{study}/delete")
    page = admin.get("/ui/changes/?type=Deleted").content.decode()
    assert study in page and "no longer in the archive" in page


def test_jobs_name_the_studies_they_work_on(admin):
    store(admin, ct_series("job", 1, patient_name="MÜLLER^JÜRGEN", study_description="MR KNEE")[0])
    study = Study.objects.get().public_id
    Job.objects.create(id="job-names", type="Archive", state=JobState.PENDING, progress=0,
                       params={"resources": [study, "gone-id-1234"]}, created_at=timezone.now() - datetime.timedelta(1))
    page = admin.get("/ui/jobs/").content.decode()
    assert "MÜLLER, JÜRGEN" in page and "2026-01-15 MR KNEE" in page
    assert "gone-id-" in page  # what is no longer here keeps its short id


def test_upload_form_names_the_studies_it_stored(admin):
    response = admin.post("/ui/upload/", {"files": [SimpleUploadedFile("a.dcm", ct_series("up", 1,
                                                                          patient_name="DOE^JOHN")[0])]})
    assert "DOE, JOHN · 2026-01-15 CT CHEST" in response.content.decode()
