"""Selectors of archive.resources: the plain-SQL reads answer exactly what the ORM ones do."""

import datetime

import pytest

from archive import db, ingest, query, resources
from archive.models import Label, Level
from tests.dicomgen import make_instance, uid


@pytest.fixture
def stored(db, storage_dir):
    study = uid("resources", "study")
    results = [ingest.store(make_instance(patient_id="P-RES", study_uid=study, series_uid=uid(study, series),
                                          sop_uid=uid(study, series, n), instance_number=n, rows=8, columns=8),
                            ingest.Origin.http("127.0.0.1", "admin"))
               for series in (1, 2) for n in (1, 2, 3)]
    first = results[0]
    for level, public_id in ((Level.STUDY, first.study_id), (Level.INSTANCE, first.instance_id)):
        for name in ("zeta", "alpha"):
            Label.objects.create(level=level, resource_id=public_id, name=name)
    return first


def test_describe_by_id_answers_what_describe_of_get_does_at_every_level(stored):
    for level, public_id in ((Level.PATIENT, stored.patient_id), (Level.STUDY, stored.study_id),
                             (Level.SERIES, stored.series_id), (Level.INSTANCE, stored.instance_id)):
        expected = resources.describe(level, resources.get(level, public_id))
        assert resources.describe_by_id(level, public_id) == expected
        assert list(resources.describe_by_id(level, public_id)) == list(expected)  # the JSON's key order too
    assert resources.describe_by_id(Level.STUDY, stored.study_id)["Labels"] == ["alpha", "zeta"]
    assert len(resources.describe_by_id(Level.SERIES, stored.series_id)["Instances"]) == 3


def test_describe_by_id_of_an_unknown_resource_is_none(db):
    assert resources.describe_by_id(Level.STUDY, "00000000-00000000-00000000-00000000-00000000") is None


def test_dicom_file_names_the_stored_file(stored):
    found = resources.dicom_file(stored.instance_id)
    assert found["size"] > 0 and len(found["storage_key"]) == 32 and len(found["md5"]) == 32
    assert resources.dicom_file(stored.series_id) is None


def test_sqlite_columns_read_as_the_orm_reads_them():
    # SQLite gives JSON and timestamps as text (naive UTC): the plain reads convert them alike.
    assert db.datetime_value("2026-01-15 10:11:12.345678") == datetime.datetime(
        2026, 1, 15, 10, 11, 12, 345678, tzinfo=datetime.timezone.utc)
    assert resources._json('{"PatientID": "P"}') == {"PatientID": "P"}
    assert resources._json({"PatientID": "P"}) == {"PatientID": "P"}


def test_a_read_checks_a_requests_remembered_credentials_in_its_own_query(stored, django_user_model):
    from django.contrib.auth.models import Group

    from archive.errors import CredentialsRefused
    from archive.roles import VIEWER, Credentials

    user = django_user_model.objects.create_user("reader", password="pw")
    user.groups.add(Group.objects.get_or_create(name=VIEWER)[0])

    def credentials():
        return Credentials(user.pk, user.password, VIEWER)

    for read in (lambda c: resources.describe_by_id(Level.STUDY, stored.study_id, c),
                 lambda c: resources.describe_by_id(Level.INSTANCE, stored.instance_id, c),
                 lambda c: resources.dicom_file(stored.instance_id, c),
                 lambda c: resources.stored_instances(uid("resources", "study"), credentials=c),
                 # A search: a compiled statement, and one the ORM builds each time (labels).
                 lambda c: _values(query.find(query.Query(Level.SERIES, {"PatientID": "P-RES"}),
                                              ("NumberOfSeriesRelatedInstances",), credentials=c)),
                 lambda c: _values(query.find(query.Query(Level.INSTANCE, {"PatientID": "P-RES"}, labels=("alpha",)),
                                              credentials=c))):
        held = credentials()
        assert read(held) == read(None) and held.confirmed and not held.refused
        user.is_active = False
        user.save()
        refused = credentials()
        with pytest.raises(CredentialsRefused):
            read(refused)
        assert refused.refused and not refused.confirmed
        user.is_active = True
        user.save()
        other = Credentials(user.pk, "pbkdf2_sha256$another-hash", VIEWER)  # the password changed since
        with pytest.raises(CredentialsRefused):
            read(other)
    user.groups.clear()
    with pytest.raises(CredentialsRefused):
        resources.describe_by_id(Level.STUDY, stored.study_id, credentials())
    # Nothing found, nothing checked: the access check checks them itself then.
    unknown = credentials()
    assert resources.describe_by_id(Level.STUDY, "00000000-00000000-00000000-00000000-00000000", unknown) is None
    assert resources.dicom_file(stored.series_id, unknown) is None
    assert resources.stored_instances("1.2.3.999", credentials=unknown) == []
    assert query.find(query.Query(Level.STUDY, {"PatientID": "nobody"}), credentials=unknown) == ([], False)
    assert not unknown.confirmed and not unknown.refused


def _values(found):
    matches, more = found
    assert matches
    return [(m.row.public_id, m.values) for m in matches], more
