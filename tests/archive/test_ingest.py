"""ingest.store(): the one ingest path, called directly on generated files."""

import io
import zipfile

import pytest

from archive import ingest
from archive.errors import ConflictingInstance, RejectedInstance
from archive.models import Attachment, Change, ChangeType, Instance, Level, Patient, Series, Study
from archive.storage import get_storage
from tests.dicomgen import make_instance, uid

REST = ingest.Origin.http("127.0.0.1", "admin")


def stored_files(storage_dir):
    return sorted(p for p in storage_dir.rglob("*") if p.is_file())


def test_new_instance_is_indexed_with_its_attachment_and_changes(db, storage_dir):
    result = ingest.store(make_instance(patient_id="P1", patient_name="DOE^JANE"), REST)

    assert result.status == ingest.SUCCESS
    instance = Instance.objects.select_related("series__study__patient").get()
    assert instance.public_id == result.instance_id
    assert instance.series.public_id == result.series_id
    assert instance.series.study.public_id == result.study_id
    patient = instance.series.study.patient
    assert (patient.public_id, patient.patient_id, patient.patient_name_norm) == (result.patient_id, "P1", "DOE^JANE")
    assert (instance.origin, instance.remote_ip) == ("RestApi", "127.0.0.1")
    attachment = Attachment.objects.get()
    assert (attachment.level, attachment.resource_id, attachment.name) == (Level.INSTANCE, result.instance_id, "dicom")
    assert get_storage().exists(attachment.storage_key)
    assert len(stored_files(storage_dir)) == 1
    changes = set(Change.objects.values_list("change_type", "public_id"))
    assert changes == {
        (ChangeType.NEW_INSTANCE, result.instance_id),
        (ChangeType.NEW_SERIES, result.series_id),
        (ChangeType.NEW_STUDY, result.study_id),
        (ChangeType.NEW_PATIENT, result.patient_id),
    }


def test_second_instance_of_a_series_adds_only_a_new_instance_change(db, storage_dir):
    ingest.store(make_instance(instance_number=1), REST)
    second = ingest.store(make_instance(instance_number=2), REST)

    assert (Patient.objects.count(), Study.objects.count(), Series.objects.count()) == (1, 1, 1)
    assert Instance.objects.count() == 2
    assert list(Change.objects.filter(public_id=second.instance_id).values_list("change_type", flat=True)) == [
        ChangeType.NEW_INSTANCE]
    assert Change.objects.count() == 5


def test_same_bytes_twice_is_already_stored_with_one_row_and_one_file(db, storage_dir):
    data = make_instance()
    first = ingest.store(data, REST)
    again = ingest.store(data, REST)

    assert again.status == ingest.ALREADY_STORED
    assert again.instance_id == first.instance_id
    assert Instance.objects.count() == 1
    assert Attachment.objects.count() == 1
    assert len(stored_files(storage_dir)) == 1


@pytest.mark.parametrize(
    "body",
    [b"plain text, not an image\n" * 20, make_instance()[:-7], make_instance(rows=128, columns=128)[:9000], b""],
    ids=["not-dicom", "truncated-at-end", "truncated-in-pixels", "empty"],
)
def test_unreadable_input_is_rejected_and_leaves_no_row_and_no_file(db, storage_dir, body):
    with pytest.raises(RejectedInstance):
        ingest.store(body, REST)

    assert not Patient.objects.exists()
    assert not Instance.objects.exists()
    assert not Attachment.objects.exists()
    assert not Change.objects.exists()
    assert stored_files(storage_dir) == []


def test_known_sop_instance_uid_under_another_study_is_a_conflict(db, storage_dir):
    sop = uid("conflict", "sop")
    first = ingest.store(make_instance(study_uid=uid("conflict", "study", 1), sop_uid=sop), REST)

    with pytest.raises(ConflictingInstance):
        ingest.store(make_instance(study_uid=uid("conflict", "study", 2), sop_uid=sop), REST)

    assert list(Instance.objects.values_list("public_id", flat=True)) == [first.instance_id]
    assert Study.objects.count() == 1
    assert len(stored_files(storage_dir)) == 1


def test_zip_with_a_good_and_a_bad_member_keeps_the_good_one(db, storage_dir):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("good.dcm", make_instance())
        archive.writestr("notes.txt", b"not an image")
    buffer.seek(0)

    good, bad = ingest.store_zip(buffer, REST)

    assert (good.name, good.result.status, good.error) == ("good.dcm", ingest.SUCCESS, None)
    assert bad.name == "notes.txt" and bad.result is None
    assert isinstance(bad.error, RejectedInstance)
    assert list(Instance.objects.values_list("public_id", flat=True)) == [good.result.instance_id]
    assert len(stored_files(storage_dir)) == 1
