"""The audit trail people can read: one read per study per reader per window, deletions and
configuration changes in words (archive.audit, through the access middleware)."""

import datetime
import json
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from archive import audit, ingest
from archive.models import AuditEvent
from tests.dicomgen import make_instance, uid


@pytest.fixture
def reader(client, admin_user, storage_dir):
    client.force_login(admin_user)
    return client


def store_series(count):
    study, series = uid("audit", "study"), uid("audit", "series")
    results = [ingest.store(make_instance(patient_name="MÜLLER^JÜRGEN", patient_id="P-AUDIT", study_uid=study,
                                          series_uid=series, sop_uid=uid("audit", n), instance_number=n + 1,
                                          rows=8, columns=8),
                            ingest.Origin.http("127.0.0.1", "admin"))
               for n in range(count)]
    return results[0].study_id, [r.instance_id for r in results]


def test_viewing_a_100_slice_series_once_writes_one_read_event(reader):
    study, instances = store_series(100)
    assert reader.get(f"/ui/studies/{study}/").status_code == 200
    for instance in instances:
        assert reader.get(f"/instances/{instance}").status_code == 200
    reads = AuditEvent.objects.filter(action="read")
    assert [(e.level, e.resource) for e in reads] == [("Study", study)]
    assert reads[0].details["subject"]["PatientName"] == "MÜLLER^JÜRGEN"
    # Past the window, a new view is a new read.
    later = timezone.now() + datetime.timedelta(minutes=16)
    with mock.patch("django.utils.timezone.now", return_value=later):
        assert reader.get(f"/instances/{instances[0]}").status_code == 200
    assert AuditEvent.objects.filter(action="read").count() == 2


def test_a_dicomweb_or_wado_uri_read_names_the_study_by_its_id_and_its_subject(reader):
    study, instances = store_series(2)
    uid = reader.get(f"/studies/{study}").json()["MainDicomTags"]["StudyInstanceUID"]
    audit.forget()
    AuditEvent.objects.all().delete()
    assert reader.get(f"/dicom-web/studies/{uid}/metadata").status_code == 200
    row = AuditEvent.objects.get(action="read")
    assert (row.level, row.resource) == ("Study", study) and row.path.endswith("/metadata")
    assert row.details["subject"]["PatientName"] == "MÜLLER^JÜRGEN"
    # The same study read through the REST API within the window: the same reading.
    assert reader.get(f"/instances/{instances[1]}/file").status_code == 200
    assert AuditEvent.objects.filter(action="read").count() == 1
    # And through WADO-URI, which names the study in its query.
    tags = reader.get(f"/instances/{instances[0]}/tags?simplify").json()
    series_uid, sop_uid = tags["SeriesInstanceUID"], tags["SOPInstanceUID"]
    AuditEvent.objects.all().delete()
    audit.forget()
    assert reader.get(f"/wado?requestType=WADO&studyUID={uid}&seriesUID={series_uid}&objectUID={sop_uid}"
                      ).status_code == 200
    row = AuditEvent.objects.get(action="read")
    assert (row.level, row.resource, row.path) == ("Study", study, "/wado")
    assert row.details["subject"]["PatientID"] == "P-AUDIT"
    # A UID the archive does not hold is named as it was asked.
    assert reader.get("/dicom-web/studies/1.2.3.999/metadata").status_code == 404
    assert AuditEvent.objects.filter(action="read", resource="1.2.3.999").count() == 1


def test_the_trails_check_of_a_read_uses_only_the_resources_index(db):
    # A scan of another index (every read row, or every row of the reader, or every row of
    # the window) grows with the trail: SQLite took the action's; PostgreSQL, once it had
    # statistics that put no row after the bound, the time's.
    for n in range(200):
        AuditEvent.objects.create(at=timezone.now(), actor_kind="user", actor="admin", action="read",
                                  level="Study", resource=f"study-{n}", node="here")
    params = ["study-7", "user", "admin", "Study", connection.ops.adapt_datetimefield_value(timezone.now())]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + audit._LATEST_READ.replace("%s", "?"), params)
        else:
            cursor.execute(f"ANALYZE {AuditEvent._meta.db_table}")
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + audit._LATEST_READ, params)
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "audit_event_resource" in plan, plan
    assert not any(f"audit_event_{other}" in plan for other in ("action", "actor", "at_")), plan


def test_a_read_another_process_recorded_within_the_window_is_not_recorded_again(reader):
    study, instances = store_series(1)
    AuditEvent.objects.create(at=timezone.now(), actor_kind="user", actor="admin", action="read", level="Study",
                              resource=study, node="elsewhere")
    assert reader.get(f"/instances/{instances[0]}").status_code == 200
    assert AuditEvent.objects.filter(action="read").count() == 1
    # The row it found is remembered with its time: the next read asks nothing.
    with CaptureQueriesContext(connection) as repeated:
        assert reader.get(f"/instances/{instances[0]}").status_code == 200
    assert [q["sql"] for q in repeated.captured_queries if "audit_event" in q["sql"]] == []


def test_repeated_reads_of_a_study_within_the_window_query_nothing_for_the_trail(reader):
    study, instances = store_series(2)
    assert reader.get(f"/instances/{instances[0]}/file").status_code == 200
    with CaptureQueriesContext(connection) as first:
        assert reader.get(f"/instances/{instances[1]}/file").status_code == 200
    with CaptureQueriesContext(connection) as repeated:
        assert reader.get(f"/instances/{instances[1]}/file").status_code == 200
    # The first read of instance 1 looked its study up, and found the study's read row;
    # the repeat knows both.
    assert any("audit_event" in q["sql"] for q in first.captured_queries)
    assert [q["sql"] for q in repeated.captured_queries if "audit_event" in q["sql"] or '"study"' in q["sql"]] == []
    assert len(repeated.captured_queries) == len(first.captured_queries) - 2
    assert AuditEvent.objects.filter(action="read").count() == 1


def test_a_deletion_names_what_went(reader):
    study, _ = store_series(3)
    assert reader.delete(f"/studies/{study}").status_code == 200
    row = AuditEvent.objects.get(action="delete")
    assert row.details["subject"] == {"PatientName": "MÜLLER^JÜRGEN", "PatientID": "P-AUDIT",
                                      "StudyDate": "20260115", "StudyDescription": "CT CHEST",
                                      "AccessionNumber": "ACC0001", "series": 1, "instances": 3}
    page = reader.get("/ui/audit/").content.decode()
    assert "MÜLLER, JÜRGEN" in page and "2026-01-15 · CT CHEST" in page and "1 series, 3 instances" in page


def test_a_subject_names_the_resource_and_its_ancestors_at_every_level(db, storage_dir):
    stored = ingest.store(make_instance(patient_name="DOE^JANE", patient_id="P-SUBJECT", study_uid=uid("s", "study"),
                                        series_uid=uid("s", "series"), sop_uid=uid("s", 1), instance_number=7,
                                        modality="MR", rows=8, columns=8),
                          ingest.Origin.http("127.0.0.1", "admin"))
    patient = {"PatientName": "DOE^JANE", "PatientID": "P-SUBJECT"}
    study = {"StudyDate": "20260115", "StudyDescription": "CT CHEST", "AccessionNumber": "ACC0001", **patient}
    series = {"Modality": "MR", "SeriesDescription": "AXIAL 1mm", **study}
    assert audit.subject("Patient", stored.patient_id, counts=True) == {**patient, "series": 1, "instances": 1,
                                                                         "studies": 1}
    assert audit.subject("Study", stored.study_id) == study
    assert audit.subject("Series", stored.series_id, counts=True) == {**series, "series": 1, "instances": 1}
    assert audit.subject("Instance", stored.instance_id) == {"InstanceNumber": "7", **series}
    assert list(audit.subject("Instance", stored.instance_id)) == ["InstanceNumber", "Modality", "SeriesDescription", *study]
    assert audit.subject("Study", "00000000-00000000-00000000-00000000-00000000") == {}
    assert audit.subject("Worklist", stored.study_id) == {}


def test_configuration_rows_name_the_peer_and_its_changed_fields_never_secrets(reader):
    body = {"Url": "http://10.0.0.9:8042/", "Username": "sync", "Password": "s3cret-value"}
    assert reader.put("/peers/remote", json.dumps(body), content_type="application/json").status_code == 200
    body.update(Url="http://10.0.0.10:8042/", Password="other-s3cret")
    assert reader.put("/peers/remote", json.dumps(body), content_type="application/json").status_code == 200
    created, changed = AuditEvent.objects.filter(action="configure").order_by("id")
    assert created.details["name"] == "remote" and created.details["created"]
    assert changed.details["changed"] == {"url": ["http://10.0.0.9:8042/", "http://10.0.0.10:8042/"],
                                          "password": "(changed)"}
    assert "s3cret" not in json.dumps(list(AuditEvent.objects.values_list("details", flat=True)))
    assert reader.delete("/peers/remote").status_code == 200
    assert AuditEvent.objects.filter(action="configure").last().details["deleted"]
    page = reader.get("/ui/audit/?action=configure").content.decode()
    assert "peer <strong>remote</strong>" in page and "password (changed)" in page


def test_sends_and_child_queries_are_audited_as_their_plain_forms():
    assert audit.action_of("POST", "/peers/site-b/store-straight") == audit.action_of("POST", "/peers/site-b/store") == "send"
    assert audit.action_of("POST", "/modalities/ct/store-straight") == "send"
    assert audit.action_of("POST", "/queries/q1/answers/0/query-series") == audit.action_of("POST", "/modalities/ct/query")


def test_a_row_reads_back_as_it_was_written(db):
    audit.record("user", "admin", "query", address="10.0.0.1", method="GET", path="/dicom-web/studies", status=200,
                 details={"query": {"PatientName": "MÜLLER*"}})
    row = AuditEvent.objects.get()
    assert (row.actor_kind, row.actor, row.action, row.address, row.method, row.path, row.status, row.level,
            row.resource) == ("user", "admin", "query", "10.0.0.1", "GET", "/dicom-web/studies", 200, "", "")
    assert row.details == {"query": {"PatientName": "MÜLLER*"}}
    assert abs(row.at - timezone.now()) < datetime.timedelta(minutes=1)
