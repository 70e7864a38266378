"""deletion.delete_resource and remove_files: index rows and the outbox of files."""

import pytest

from archive import deletion, ingest, signals
from archive.errors import UnknownResource
from archive.models import Attachment, Change, ChangeType, FileDeletion, Instance, Level, Patient, Series, Study
from archive.storage import get_storage
from tests.dicomgen import make_instance, uid

# remove_files() closes its connection when a worker hands it the rows: outside a test transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def store_study(tag, count, patient_id="P-DEL", series=1):
    """Store a study of `count` instances; its public id and the storage keys of its files."""
    study = uid(tag, "study")
    files = [make_instance(patient_id=patient_id, study_uid=study, series_uid=uid(tag, "series", n % series),
                           sop_uid=uid(tag, "sop", n), instance_number=n + 1) for n in range(count)]
    results = [ingest.store(data, ingest.Origin.http("127.0.0.1", "admin")) for data in files]
    return results[0].study_id, keys_of([r.instance_id for r in results])


def keys_of(instance_ids):
    return set(Attachment.objects.filter(resource_id__in=instance_ids).values_list("storage_key", flat=True))


@pytest.fixture
def released():
    """The outbox row ids the core says may now be removed (signals.files_released)."""
    ids = []

    def receiver(sender, outbox_ids, **kwargs):
        ids.extend(outbox_ids)

    signals.files_released.connect(receiver, weak=False)
    yield ids
    signals.files_released.disconnect(receiver)


def deleted_changes():
    return list(Change.objects.filter(change_type=ChangeType.DELETED).values_list("level", "public_id"))


def test_deleting_a_study_removes_its_rows_and_puts_its_files_in_the_outbox(storage_dir, released):
    doomed, doomed_keys = store_study("doomed", 3, series=2)
    kept, kept_keys = store_study("kept", 1)
    patient = Patient.objects.get()

    remaining = deletion.delete_resource(Level.STUDY, doomed)

    assert remaining == (Level.PATIENT, patient.public_id)
    assert list(Study.objects.values_list("public_id", flat=True)) == [kept]
    assert (Series.objects.count(), Instance.objects.count()) == (1, 1)
    assert set(Attachment.objects.values_list("storage_key", flat=True)) == kept_keys
    outbox = dict(FileDeletion.objects.values_list("id", "storage_key"))
    assert set(outbox.values()) == doomed_keys and len(outbox) == 3
    assert sorted(released) == sorted(outbox)
    assert deleted_changes() == [(Level.STUDY, doomed)]
    # The files go once the rows are committed, by whoever takes the outbox rows.
    assert all(get_storage().exists(key) for key in doomed_keys)


def test_remove_files_removes_the_files_and_the_rows_once(storage_dir, released):
    doomed, doomed_keys = store_study("doomed", 3)
    kept, kept_keys = store_study("kept", 1)
    deletion.delete_resource(Level.STUDY, doomed)

    assert deletion.remove_files(released) == 3
    assert not any(get_storage().exists(key) for key in doomed_keys)
    assert not FileDeletion.objects.exists()
    assert all(get_storage().exists(key) for key in kept_keys)

    assert deletion.remove_files(released) == 0
    assert all(get_storage().exists(key) for key in kept_keys)


def test_deleting_the_last_study_of_a_patient_deletes_the_patient(storage_dir, released):
    study, keys = store_study("alone", 2)
    patient = Patient.objects.get()

    assert deletion.delete_resource(Level.STUDY, study) is None

    assert not Patient.objects.exists()
    assert not Instance.objects.exists()
    assert set(FileDeletion.objects.values_list("storage_key", flat=True)) == keys
    assert sorted(deleted_changes()) == sorted([(Level.STUDY, study), (Level.PATIENT, patient.public_id)])


def test_deleting_the_last_instance_of_a_series_returns_the_study(storage_dir, released):
    study, _ = store_study("two-series", 2, series=2)
    instance = Instance.objects.order_by("instance_number").first()

    assert deletion.delete_resource(Level.INSTANCE, instance.public_id) == (Level.STUDY, study)
    assert Series.objects.count() == 1
    assert len(released) == 1


def test_deleting_an_unknown_resource_raises_and_changes_nothing(storage_dir, released):
    store_study("kept", 1)
    with pytest.raises(UnknownResource):
        deletion.delete_resource(Level.STUDY, "0" * 8 + "-" + "0" * 35)
    assert Instance.objects.count() == 1
    assert not FileDeletion.objects.exists()
    assert deleted_changes() == []
    assert released == []
