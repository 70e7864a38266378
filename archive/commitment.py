"""Storage commitment (PS3.4 J.3): whether the archive takes responsibility for
the instances a modality sent, instance by instance.

A modality deletes its own copies on the archive's word, so the word is given
only for what a retrieve would return intact: an instance is committed when it
is indexed, its DICOM file is in the storage area, and the file's MD5 is still
the one computed when it was stored. Every request and its answer are kept
(StorageCommitment), so any node can tell what was asked and answered, whichever
node took the request.
"""

import logging
from dataclasses import dataclass, field

from django.utils import timezone

from archive import db
from archive.errors import InvalidCommitmentRequest  # noqa: F401 (raised here, caught by name)
from archive.models import Attachment, Instance, StorageCommitment
from archive.storage import get_storage, intact

log = logging.getLogger(__name__)

# Failure Reason (0008,1197) values (PS3.3 C.14.1.1).
PROCESSING_FAILURE = 0x0110
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119

CLASS_UID = "ReferencedSOPClassUID"
INSTANCE_UID = "ReferencedSOPInstanceUID"
REASON = "FailureReason"
BATCH = 1000  # SOP Instance UIDs per query


@dataclass
class Outcome:
    """The answer to a request: the references committed, and those that failed with their reason."""

    transaction_uid: str
    committed: list = field(default_factory=list)  # [{"ReferencedSOPClassUID", "ReferencedSOPInstanceUID"}]
    failed: list = field(default_factory=list)  # the same, with "FailureReason"

    @property
    def event_type(self):
        """The N-EVENT-REPORT's Event Type ID: 1 all committed, 2 failures exist (PS3.4 J.3.3.1.2)."""
        return 2 if self.failed else 1


def request(transaction_uid, references, calling_aet=""):
    """Record a commitment request: references are (SOP Class UID, SOP Instance UID) pairs.

    A request that repeats a Transaction UID (a modality asking again after a
    lost report) is taken as a new request for it and answered again."""
    transaction_uid = str(transaction_uid or "").strip()
    if not transaction_uid:
        raise InvalidCommitmentRequest("the request has no Transaction UID (0008,1195)")
    requested = [{CLASS_UID: str(sop_class or "").strip(), INSTANCE_UID: str(sop_instance or "").strip()}
                 for sop_class, sop_instance in references]
    if not requested:
        raise InvalidCommitmentRequest("the request references no SOP instance (0008,1199)")
    if not all(ref[INSTANCE_UID] for ref in requested):
        raise InvalidCommitmentRequest("a Referenced SOP Sequence item has no Referenced SOP Instance UID")
    db.run(_record, transaction_uid, requested, calling_aet[:16])


def verify(transaction_uid):
    """Check each instance of a recorded request and keep the outcome; the Outcome."""
    requested = StorageCommitment.objects.values_list("requested", flat=True).get(transaction_uid=transaction_uid)
    outcome = Outcome(transaction_uid)
    for reference, reason in check(requested):
        if reason is None:
            outcome.committed.append(reference)
        else:
            outcome.failed.append({**reference, REASON: reason})
    StorageCommitment.objects.filter(transaction_uid=transaction_uid).update(
        committed=outcome.committed, failed=outcome.failed)
    log.info("storage commitment %s: %d committed, %d failed", transaction_uid, len(outcome.committed),
             len(outcome.failed))
    return outcome


def reported(transaction_uid):
    """Note that the requester acknowledged the report."""
    StorageCommitment.objects.filter(transaction_uid=transaction_uid).update(reported_at=timezone.now())


def check(references):
    """(reference, None) for each reference the archive commits to, (reference, Failure Reason) for the others."""
    storage = get_storage()
    for start in range(0, len(references), BATCH):
        batch = references[start:start + BATCH]
        uids = {ref[INSTANCE_UID] for ref in batch}
        instances = {uid: (public_id, sop_class) for uid, public_id, sop_class in Instance.objects
                     .filter(sop_instance_uid__in=uids).values_list("sop_instance_uid", "public_id", "sop_class_uid")}
        files = {resource_id: (key, md5) for resource_id, key, md5 in Attachment.objects
                 .filter(resource_id__in=[public_id for public_id, _ in instances.values()], name=Attachment.DICOM)
                 .values_list("resource_id", "storage_key", "md5")}
        for ref in batch:
            public_id, sop_class = instances.get(ref[INSTANCE_UID], (None, None))
            if public_id is None or public_id not in files:
                yield ref, NO_SUCH_OBJECT_INSTANCE
            elif ref[CLASS_UID] and ref[CLASS_UID] != sop_class:
                yield ref, CLASS_INSTANCE_CONFLICT
            elif not intact(storage, *files[public_id]):
                log.error("storage commitment refused for %s: its file %s is missing or altered",
                          ref[INSTANCE_UID], files[public_id][0])
                yield ref, PROCESSING_FAILURE
            else:
                yield ref, None


def _record(transaction_uid, requested, calling_aet):
    StorageCommitment.objects.update_or_create(
        transaction_uid=transaction_uid,
        defaults=dict(calling_aet=calling_aet, requested=requested, committed=[], failed=[], reported_at=None),
        create_defaults=dict(calling_aet=calling_aet, requested=requested, created_at=timezone.now()),
    )
