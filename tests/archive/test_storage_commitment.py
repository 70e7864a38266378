"""commitment: the archive commits only to what is indexed, present and intact."""

import pytest

from archive import commitment, ingest
from archive.errors import InvalidCommitmentRequest
from archive.models import Attachment, StorageCommitment
from archive.storage import get_storage
from tests.dicomgen import make_instance, uid

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


def store(n):
    """Store instance n of a test study; its SOP Instance UID and storage key."""
    sop_uid = uid("commit", n)
    result = ingest.store(make_instance(patient_id="P-COMMIT", sop_uid=sop_uid, instance_number=n + 1),
                          ingest.Origin.http("127.0.0.1", "admin"))
    return sop_uid, Attachment.objects.get(resource_id=result.instance_id, name=Attachment.DICOM).storage_key


def test_stored_instances_are_committed_and_an_unknown_one_fails_as_no_such_object(db, storage_dir):
    stored = [store(n)[0] for n in range(3)]
    unknown = uid("commit", "unknown")

    commitment.request("1.2.3.1", [(CT, s) for s in stored] + [(CT, unknown)], calling_aet="CT1")
    outcome = commitment.verify("1.2.3.1")

    assert outcome.event_type == 2
    assert [r["ReferencedSOPInstanceUID"] for r in outcome.committed] == stored
    assert outcome.failed == [{"ReferencedSOPClassUID": CT, "ReferencedSOPInstanceUID": unknown,
                               "FailureReason": commitment.NO_SUCH_OBJECT_INSTANCE}]
    row = StorageCommitment.objects.get(transaction_uid="1.2.3.1")
    assert (row.calling_aet, len(row.requested), len(row.committed), len(row.failed)) == ("CT1", 4, 3, 1)
    assert row.reported_at is None


def test_all_committed_is_event_type_1(db, storage_dir):
    sop_uid, _ = store(0)
    commitment.request("1.2.3.2", [(CT, sop_uid)])
    assert commitment.verify("1.2.3.2").event_type == 1


def test_a_file_altered_or_gone_since_it_was_stored_is_not_committed(db, storage_dir):
    (altered, altered_key), (gone, gone_key), (intact, _) = store(0), store(1), store(2)
    path = storage_dir / altered_key[0:2] / altered_key[2:4] / altered_key
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one bit of pixel data: same size, another checksum
    path.write_bytes(bytes(data))
    get_storage().delete(gone_key)

    commitment.request("1.2.3.3", [(CT, altered), (CT, gone), (CT, intact)])
    outcome = commitment.verify("1.2.3.3")

    assert [r["ReferencedSOPInstanceUID"] for r in outcome.committed] == [intact]
    assert {(r["ReferencedSOPInstanceUID"], r["FailureReason"]) for r in outcome.failed} == {
        (altered, commitment.PROCESSING_FAILURE), (gone, commitment.PROCESSING_FAILURE)}


def test_an_instance_referenced_with_another_sop_class_fails_as_class_instance_conflict(db, storage_dir):
    sop_uid, _ = store(0)
    commitment.request("1.2.3.4", [(MR, sop_uid)])
    assert commitment.verify("1.2.3.4").failed[0]["FailureReason"] == commitment.CLASS_INSTANCE_CONFLICT


def test_a_repeated_transaction_uid_is_answered_again_with_what_is_stored_now(db, storage_dir):
    sop_uid = uid("commit", 0)
    commitment.request("1.2.3.5", [(CT, sop_uid)])
    assert commitment.verify("1.2.3.5").failed
    commitment.reported("1.2.3.5")

    store(0)
    commitment.request("1.2.3.5", [(CT, sop_uid)])
    outcome = commitment.verify("1.2.3.5")

    assert (len(outcome.committed), outcome.failed) == (1, [])
    assert StorageCommitment.objects.get(transaction_uid="1.2.3.5").reported_at is None


@pytest.mark.parametrize("transaction_uid, references", [("", [(CT, "1.2.3")]), ("1.2.3.6", []), ("1.2.3.6", [(CT, "")])])
def test_a_request_without_transaction_uid_or_references_is_refused(db, transaction_uid, references):
    with pytest.raises(InvalidCommitmentRequest):
        commitment.request(transaction_uid, references)
    assert not StorageCommitment.objects.exists()
