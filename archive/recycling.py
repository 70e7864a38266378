"""A bounded archive: PACS_MAXIMUM_PATIENT_COUNT and PACS_MAXIMUM_STORAGE_SIZE, checked
by the ingest path in the transaction that indexes an instance.

In Recycle mode the least recently updated patients that are not protected are deleted
(through the one deletion path, files by the outbox) until the new instance fits; in
Reject mode, or when every other patient is protected, the store fails with StorageFull.

Exact cluster-wide: while a bound is set, every indexing transaction first takes one
PostgreSQL advisory lock, held until it commits, so two nodes never both see room for
one more patient. (SQLite writers are serialised by BEGIN IMMEDIATE already.) With no
bound set nothing is locked and nothing is counted.
"""

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum

from archive.errors import StorageFull  # noqa: F401 (raised here, caught by name)
from archive import deletion
from archive.models import Attachment, Instance, Level, Patient

# pg_advisory_xact_lock key of the archive's quota: "pacsquot" as a 64-bit integer.
LOCK_KEY = int.from_bytes(b"pacsquot", "big") - 2**63
MB = 1024 * 1024


def bounded():
    return settings.MAXIMUM_PATIENT_COUNT > 0 or settings.MAXIMUM_STORAGE_SIZE > 0


def make_room(patient_public_id, added_size, sop_instance_uid):
    """Inside the indexing transaction, before any index row is written: delete what must
    go for a new instance of this patient of `added_size` bytes to fit, or raise
    StorageFull; nothing for an instance already stored. The recycled patients' files are
    queued for removal once the transaction commits."""
    if not bounded():
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
    if Instance.objects.filter(sop_instance_uid=sop_instance_uid).exists():
        return  # AlreadyStored: takes no room
    new_patient = not Patient.objects.filter(public_id=patient_public_id).exists()
    released = []
    while True:
        reason = _over(new_patient, added_size)
        if reason is None:
            break
        if settings.MAXIMUM_STORAGE_MODE == "Reject":
            raise StorageFull(f"The file storage is full: {reason} (PACS_MAXIMUM_STORAGE_MODE=Reject)")
        victim = (Patient.objects.filter(is_protected=False).exclude(public_id=patient_public_id)
                  .order_by("last_update", "pk").values_list("public_id", flat=True).first())
        if victim is None:
            raise StorageFull(f"The file storage is full: {reason}, and no unprotected patient is left to recycle")
        outbox, _ = deletion._delete(Level.PATIENT, victim)
        released += outbox
    if released:
        transaction.on_commit(lambda: deletion.queue_removal(released))


def _over(new_patient, added_size):
    """Why the instance does not fit now, or None."""
    limit = settings.MAXIMUM_PATIENT_COUNT
    if limit > 0 and new_patient and Patient.objects.count() >= limit:
        return f"{limit} patients stored (PACS_MAXIMUM_PATIENT_COUNT)"
    limit = settings.MAXIMUM_STORAGE_SIZE * MB
    if limit > 0:
        used = Attachment.objects.aggregate(total=Sum("size"))["total"] or 0
        if used + added_size > limit:
            return f"{used + added_size} bytes would pass {settings.MAXIMUM_STORAGE_SIZE} MB (PACS_MAXIMUM_STORAGE_SIZE)"
    return None

