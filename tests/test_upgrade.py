"""Upgrading a database made by the previous main: its rows are all found after migrate.

The previous main kept the network configuration, the audit trail and the API
tokens in the cluster app; they moved to the archive app with state-only
migrations (archive 0004, cluster 0006), so the same tables must keep every row.
"""

import hashlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from archive import query, tokens
from archive.models import (
    ApiToken, Attachment, AuditEvent, Change, DicomQuery, FileDeletion, Instance, Level, Modality, Peer,
)
from cluster.models import Job

# The last migrations of main before the archive took over the models.
PREVIOUS_MAIN = [("archive", "0003_filedeletion"), ("cluster", "0005_audit_tokens")]
SECRET = "a-secret-of-the-old-token"


def migrate(targets=None):
    """Migrate to the targets (default: the latest migrations); the executor's state there."""
    executor = MigrationExecutor(connection)
    targets = targets or executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_database_of_the_previous_main_keeps_its_rows_after_the_upgrade():
    try:
        populate(migrate(PREVIOUS_MAIN))
        migrate()
        check_found()
    finally:
        migrate()


def populate(apps):
    """Rows written by the previous main's models (its migrations' historical state)."""
    now = timezone.now()
    user = apps.get_model("auth", "User").objects.create(username="scripts", is_active=True)
    apps.get_model("cluster", "Modality").objects.create(name="CT-ROOM", aet="CTSCANNER", host="10.0.0.7", port=104,
                                                        allow_move=False)
    apps.get_model("cluster", "Peer").objects.create(name="backup", url="https://backup.example/", username="sync",
                                                    http_headers={"X-Site": "north"})
    apps.get_model("cluster", "AuditEvent").objects.create(at=now, actor_kind="user", actor="scripts",
                                                          action="delete", method="DELETE", path="/studies/x",
                                                          status=200, level="Study", resource="x")
    apps.get_model("cluster", "ApiToken").objects.create(user=user, name="nightly", prefix="0badcafe",
                                                        digest=hashlib.sha256(SECRET.encode()).hexdigest(),
                                                        created_at=now)
    apps.get_model("cluster", "DicomQuery").objects.create(id="q-1", modality="CT-ROOM", level="Study",
                                                          query={"PatientID": "P-OLD"})
    apps.get_model("cluster", "Job").objects.create(id="job-1", type="archive", state="Success", created_at=now)

    stamps = dict(created_at=now, last_update=now)
    patient = apps.get_model("archive", "Patient").objects.create(
        public_id="patient-old", main_dicom_tags={"PatientName": "DOE^OLD", "PatientID": "P-OLD"}, **stamps,
        patient_id="P-OLD", patient_id_norm="P-OLD", patient_name_norm="DOE^OLD", patient_birth_date="19700101",
        patient_sex="M")
    study = apps.get_model("archive", "Study").objects.create(
        public_id="study-old", main_dicom_tags={"StudyDate": "20190101"}, **stamps, patient=patient,
        study_instance_uid="1.2.3", study_date="20190101", accession_number_norm="ACC", study_description_norm="",
        referring_physician_norm="")
    series = apps.get_model("archive", "Series").objects.create(
        public_id="series-old", **stamps, study=study, series_instance_uid="1.2.3.4", modality="CT",
        series_description_norm="", series_number="1")
    apps.get_model("archive", "Instance").objects.create(
        public_id="instance-old", **stamps, series=series, sop_instance_uid="1.2.3.4.5", sop_class_uid="1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1", instance_number=1, origin="RestApi")
    apps.get_model("archive", "Attachment").objects.create(level="Instance", resource_id="instance-old", name="dicom",
                                                           storage_key="a" * 32, size=1234, md5="0" * 32)
    apps.get_model("archive", "Change").objects.create(change_type="NewInstance", level="Instance",
                                                       public_id="instance-old", date=now)
    apps.get_model("archive", "FileDeletion").objects.create(storage_key="b" * 32, created_at=now)


def check_found():
    """The same rows, read through today's models and services."""
    modality = Modality.objects.get(name="CT-ROOM")
    assert (modality.aet, modality.host, modality.port, modality.allow_move) == ("CTSCANNER", "10.0.0.7", 104, False)
    peer = Peer.objects.get(name="backup")
    assert (peer.url, peer.username, peer.http_headers) == ("https://backup.example/", "sync", {"X-Site": "north"})
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.resource) == ("scripts", "delete", "x")
    assert ApiToken.objects.get().user.username == "scripts"
    assert tokens.user_of(f"pacs_0badcafe_{SECRET}").username == "scripts"
    assert DicomQuery.objects.get().query == {"PatientID": "P-OLD"}
    assert Job.objects.get().type == "archive"

    instance = Instance.objects.select_related("series__study__patient").get()
    assert (instance.public_id, instance.series.study.patient.public_id) == ("instance-old", "patient-old")
    matches, _ = query.find(query.Query(Level.PATIENT, {"PatientName": "doe*"}))
    assert [m.row.public_id for m in matches] == ["patient-old"]
    assert Attachment.objects.get().resource_id == "instance-old"
    assert Change.objects.get().public_id == "instance-old"
    assert FileDeletion.objects.get().storage_key == "b" * 32
