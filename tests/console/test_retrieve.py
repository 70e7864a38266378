"""The Query/Retrieve page in process: a study-level search at a pynetdicom PACS, what is
already here, and one retrieve job for the ticked studies."""

import io

import pydicom
import pytest

from archive import query
from archive.models import AuditEvent, Modality
from cluster.models import Job
from tests import servers
from tests.console.phantom import ct_series
from tests.console.test_console_views import store
from tests.peers import RemotePacs


@pytest.fixture
def remote(db):
    pacs = RemotePacs(servers.free_port(), aet="FARPACS")
    Modality.objects.create(name="far", aet="FARPACS", host="127.0.0.1", port=pacs.port)
    yield pacs
    pacs.stop()


def test_search_shows_the_remote_studies_and_which_are_here(remote, as_role):
    uploader = as_role("uploader")
    here, away = ct_series("qr-here", 1, patient_id="P-QR"), ct_series("qr-away", 2, patient_id="P-QR")
    remote.held = [pydicom.dcmread(io.BytesIO(data)) for data in here + away]
    store(uploader, here[0])
    response = uploader.get("/ui/retrieve/", {"source": "far", "patient_id": "P-QR"})
    assert response.status_code == 200
    answers = response.context["answers"]
    assert len(answers) == 2 and sorted(bool(a["here"]) for a in answers) == [False, True]
    assert b"1 already here" in response.content
    away_uid = next(a["StudyInstanceUID"] for a in answers if not a["here"])
    response = uploader.post("/ui/retrieve/studies", {"source": "far", "study": [away_uid], "method": "C-GET",
                                                      "next": "/ui/retrieve/?source=far&patient_id=P-QR"})
    job = Job.objects.get()
    assert (job.type, job.params["identifiers"], job.params["modality"]) == \
        ("DicomGetScu", [{"StudyInstanceUID": away_uid}], "far")
    assert response["Location"] == f"/ui/retrieve/?source=far&patient_id=P-QR&job={job.id}#retrieve-job"
    assert AuditEvent.objects.filter(action="retrieve").count() == 1
    page = uploader.get(response["Location"]).content.decode()
    assert f'data-job="{job.id}"' in page


def test_an_unreachable_pacs_is_said_and_viewers_do_not_query(db, as_role):
    Modality.objects.create(name="gone", aet="GONE", host="127.0.0.1", port=servers.free_port())
    response = as_role("uploader").get("/ui/retrieve/", {"source": "gone"})
    assert response.status_code == 200 and b"did not answer the search" in response.content
    assert as_role("viewer").get("/ui/retrieve/").status_code == 403


def test_typed_names_become_dicom_patterns_for_a_remote_pacs():
    assert query.Typed("john").dicom_patterns() == ["JOHN*", "*^JOHN*"]
    assert query.Typed("john doe").dicom_patterns() == ["JOHN*^DOE*", "DOE*^JOHN*"]
    assert query.Typed("Doe, John").dicom_patterns() == ["DOE*^JOHN*"]
    assert query.Typed("DOE^JOHN").dicom_patterns() == ["DOE*^JOHN*"]
