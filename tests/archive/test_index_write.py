"""The index write of a store: one statement on PostgreSQL, the same rows as the
statement-per-row write that SQLite uses."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from archive import ingest, roles
from archive.errors import ConflictingInstance, CredentialsRefused
from archive.models import Attachment, AuditEvent, Change, Instance, Patient, Series, Study
from archive.storage import get_storage
from tests.dicomgen import make_instance, uid

AUDITED = ingest.Origin.http("10.1.2.3", "admin", actor_kind="user", actor="admin", path="/instances")
WRITERS = {"one statement": ingest._index_in_one_statement, "step by step": ingest._index_step_by_step}


def _files():
    """A first instance, one more in its series, a new series, a new study of the same
    patient, a new patient, and the first one again."""
    study_a, study_b = uid("index-write", "A"), uid("index-write", "B")
    series_a1, series_a2, series_b = uid(study_a, 1), uid(study_a, 2), uid(study_b, 1)
    first = make_instance(patient_id="W1", patient_name="DOE^JANE", study_uid=study_a, series_uid=series_a1,
                          sop_uid=uid(series_a1, 1), instance_number=1)
    return [
        first,
        make_instance(patient_id="W1", patient_name="DOE^JANE", study_uid=study_a, series_uid=series_a1,
                      sop_uid=uid(series_a1, 2), instance_number=2),
        make_instance(patient_id="W1", patient_name="DOE^JANE", study_uid=study_a, series_uid=series_a2,
                      sop_uid=uid(series_a2, 1)),
        make_instance(patient_id="W1", patient_name="DOE^JANE", study_uid=study_b, series_uid=series_b,
                      sop_uid=uid(series_b, 1)),
        make_instance(patient_id="W2", patient_name="ROE^RICHARD", sop_uid=uid("index-write", "other")),
        first,
    ]


def _rows():
    """What the index holds, without database ids, times or storage keys (they differ per run)."""
    def values(model, *fields):
        return sorted(model.objects.values_list(*fields))

    return {
        "patients": values(Patient, "public_id", "main_dicom_tags", "patient_id", "patient_id_norm",
                           "patient_name_norm", "patient_birth_date", "patient_sex", "is_stable"),
        "studies": values(Study, "public_id", "patient__public_id", "main_dicom_tags", "study_instance_uid",
                          "study_date", "accession_number_norm", "study_description_norm",
                          "referring_physician_norm", "is_stable"),
        "series": values(Series, "public_id", "study__public_id", "main_dicom_tags", "series_instance_uid",
                         "modality", "series_description_norm", "series_number", "is_stable"),
        "instances": values(Instance, "public_id", "series__public_id", "main_dicom_tags", "sop_instance_uid",
                            "sop_class_uid", "transfer_syntax_uid", "instance_number", "image_tags", "origin",
                            "remote_aet", "remote_ip", "called_aet", "http_username", "node", "is_stable"),
        "attachments": values(Attachment, "level", "resource_id", "name", "size", "md5", "revision"),
        "changes": list(Change.objects.order_by("seq").values_list("change_type", "level", "public_id", "node")),
        "audit": list(AuditEvent.objects.order_by("id").values_list(
            "actor_kind", "actor", "address", "action", "method", "path", "status", "level", "resource", "details",
            "node")),
        "same time": all(p.created_at <= p.last_update for p in Patient.objects.all()),
    }


@pytest.mark.django_db(transaction=True)
def test_the_one_statement_write_gives_the_rows_and_changes_of_the_step_by_step_write(storage_dir, monkeypatch):
    seen = {}
    for name, writer in WRITERS.items():
        monkeypatch.setattr(ingest, "_index_instance", writer)
        statuses = [ingest.store(data, AUDITED).status for data in _files()]
        assert statuses == [ingest.SUCCESS] * 5 + [ingest.ALREADY_STORED]
        seen[name] = _rows()
        for model in (Attachment, Instance, Series, Study, Patient, Change, AuditEvent):
            model.objects.all().delete()
    assert seen["one statement"] == seen["step by step"]
    assert [change[0] for change in seen["one statement"]["changes"]] == [
        "NewInstance", "NewSeries", "NewStudy", "NewPatient", "NewInstance", "NewInstance", "NewSeries",
        "NewInstance", "NewSeries", "NewStudy", "NewInstance", "NewSeries", "NewStudy", "NewPatient"]
    assert [row[9]["status"] for row in seen["one statement"]["audit"]] == ["Success"] * 5 + ["AlreadyStored"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_known_uid_under_another_study_writes_nothing(storage_dir, monkeypatch, writer):
    monkeypatch.setattr(ingest, "_index_instance", WRITERS[writer])
    ingest.store(make_instance(sop_uid=uid("index-write", "twice")), AUDITED)
    before = _rows()
    with pytest.raises(ConflictingInstance):
        ingest.store(make_instance(study_uid=uid("index-write", "elsewhere"), sop_uid=uid("index-write", "twice")),
                     AUDITED)
    assert _rows() == before



@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("writer", list(WRITERS))
def test_credentials_are_checked_by_the_store_itself(storage_dir, monkeypatch, writer, django_user_model):
    from django.contrib.auth.models import Group

    monkeypatch.setattr(ingest, "_index_instance", WRITERS[writer])
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in roles.ROLES}
    user = django_user_model.objects.create_user("index-writer", password="pw")
    user.groups.add(groups["uploader"])

    def store(name, **changes):
        credentials = roles.Credentials(**{"user_id": user.pk, "password": user.password, "role": "uploader",
                                           **changes})
        origin = ingest.Origin.http("10.1.2.3", user.username, actor_kind="user", actor=user.username,
                                    path="/instances", credentials=credentials)
        try:
            ingest.store(make_instance(sop_uid=uid("index-write", "credentials", name)), origin)
        except CredentialsRefused:
            assert credentials.refused and not credentials.confirmed
            return "refused"
        assert credentials.confirmed and not credentials.refused
        return "stored"

    assert store("good") == "stored"
    before = _rows()
    keys = set(get_storage().keys())
    assert store("wrong password", password="another hash") == "refused"
    assert store("no such user", user_id=user.pk + 1000) == "refused"
    assert store("a role not held", role="admin") == "refused"
    user.groups.set([groups["viewer"]])
    assert store("role taken away") == "refused"
    user.groups.set([groups["admin"]])
    assert store("admin stores too") == "stored"
    before = _rows()
    user.is_active = False
    user.save()
    assert store("disabled") == "refused"
    assert store("disabled") == "refused"  # the same instance again: not "already stored" either
    assert _rows() == before  # no row, no change, no audit row
    assert len(set(get_storage().keys())) == len(keys) + 1  # only "admin stores too" left a file
    user.is_active, user.is_superuser = True, True
    user.groups.clear()
    user.save()
    assert store("a superuser") == "stored"

@pytest.mark.django_db(transaction=True)
def test_a_store_on_postgresql_is_one_statement(storage_dir):
    assert connection.vendor == "postgresql"
    ingest.store(make_instance(sop_uid=uid("index-write", "warm")), AUDITED)
    with CaptureQueriesContext(connection) as queries:
        result = ingest.store(make_instance(sop_uid=uid("index-write", "counted")), AUDITED)
    # One statement, a transaction by itself, the audit row included.
    statements = [query["sql"].split()[0] for query in queries]
    assert statements == ["WITH"], [query["sql"][:80] for query in queries]
    assert AuditEvent.objects.filter(action="store", resource=result.instance_id, actor="admin").count() == 1



@pytest.mark.django_db(transaction=True)
def test_the_store_statement_is_converted_once_per_process(storage_dir, monkeypatch):
    """psycopg caches its conversion of a query only up to a size and a number of
    parameters; over them it parses the whole statement again on every store."""
    import psycopg._queries

    converted = []
    uncached = psycopg._queries._query2pg_client_nocache
    monkeypatch.setattr(psycopg._queries, "_query2pg_client_nocache",
                        lambda query, encoding: converted.append(query) or uncached(query, encoding))
    for origin, name in ((AUDITED, "audited"), (ingest.Origin.dicom("MODALITY", "10.1.2.4"), "not audited")):
        for n in range(2):
            result = ingest.store(make_instance(sop_uid=uid("index-write", "cached", name, n)), origin)
            assert result.status == ingest.SUCCESS
    assert [query[:4] for query in converted] == [], "the store's statement is over psycopg's cache limits"
    assert AuditEvent.objects.filter(action="store").count() == 2

@pytest.mark.django_db(transaction=True)
def test_a_bounded_archive_still_makes_room_in_the_stores_transaction(storage_dir, settings):
    settings.MAXIMUM_PATIENT_COUNT = 10
    with CaptureQueriesContext(connection) as queries:
        ingest.store(make_instance(sop_uid=uid("index-write", "bounded")), AUDITED)
    statements = [query["sql"].split()[0] for query in queries]
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT" and "WITH" in statements


@pytest.mark.django_db(transaction=True)
def test_a_write_committed_as_its_connection_was_lost_keeps_its_file(storage_dir, monkeypatch):
    """The replay of a write whose commit was not acknowledged finds its own instance:
    that is a success, and the stored file stays."""
    from django.db import OperationalError

    from archive import db
    from archive.storage import get_storage

    write, calls = ingest._index_instance, []

    def lost_after_commit(*args):
        result = write(*args)
        calls.append(result.status)
        if len(calls) == 1:
            monkeypatch.setattr(db, "is_lost_connection", lambda error: True)
            raise OperationalError("server closed the connection unexpectedly")
        return result

    monkeypatch.setattr(ingest, "_index_instance", lost_after_commit)
    result = ingest.store(make_instance(sop_uid=uid("index-write", "lost")), AUDITED)
    assert calls == [ingest.SUCCESS, ingest.ALREADY_STORED] and result.status == ingest.SUCCESS
    key = Attachment.objects.get(resource_id=result.instance_id).storage_key
    assert get_storage().exists(key)
