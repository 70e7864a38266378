"""Deleting a resource: index rows and an outbox of files, in one unit of work.

Like Orthanc, deleting the last child of a resource deletes the resource too, and
the answer names the nearest ancestor that remains. Unlike Orthanc, the answer
does not wait for the files: the transaction that removes the rows also records
their storage keys in the FileDeletion outbox, and the files are removed after
it has committed, in batches, by a worker (or by the housekeeper when the queue
lost the task). The statements work on sets inside the database, so a study of
2,000 instances costs the same round trips as one of a single instance.
"""

import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from archive.errors import UnknownResource  # noqa: F401 (raised here, caught by name)
from archive import resources
from archive.models import Attachment, Change, ChangeType, FileDeletion, Level, Series, Study, Instance
from archive.storage import get_storage
from archive import db, signals, space

log = logging.getLogger("pacsweb.deletion")

CHILD_MODELS = {Level.PATIENT: Study, Level.STUDY: Series, Level.SERIES: Instance}
BATCH = 500


def delete_resource(level, public_id):
    """Delete the resource and everything below it; return the remaining ancestor
    as (level, public_id), or None when nothing above it remains."""
    try:
        outbox, remaining = db.run(_delete, level, public_id)
    except DatabaseError as error:
        # Deleting is how space is freed: it must work on a full disk (archive.space).
        if not (space.is_disk_full(error) and space.release_reserve()):
            raise
        outbox, remaining = db.run(_delete, level, public_id)
    queue_removal(outbox)
    return remaining


def _delete(level, public_id):
    model = resources.MODELS[level]
    row = model.objects.filter(public_id=public_id).first()
    if row is None:
        raise UnknownResource(public_id)
    # Lock the chain patient → ... → resource in the order the ingest path takes
    # it, so that no instance can be added below while we delete.
    chain = [(lvl, resources.ancestor(level, row, lvl)) for lvl in resources.ORDER[: resources.ORDER.index(level)]]
    chain.append((level, row))
    if connection.vendor == "postgresql":
        for lvl, item in chain:
            list(resources.MODELS[lvl].objects.select_for_update().filter(pk=item.pk).values_list("pk"))

    now = timezone.now()
    below = resources.ORDER[resources.ORDER.index(level) + 1:]
    outbox = []
    with connection.cursor() as cursor:
        for child_level in below:
            ids = (resources.MODELS[child_level].objects
                   .filter(**{resources.BY_ANCESTOR[child_level][level]: row.pk}).values("public_id"))
            sql, params = ids.query.sql_with_params()
            outbox += _release(cursor, sql, params, now)
        outbox += _release(cursor, "%s", [public_id], now)
    for child_level in reversed(below):
        resources.MODELS[child_level].objects.filter(**{resources.BY_ANCESTOR[child_level][level]: row.pk}).delete()
    model.objects.filter(pk=row.pk).delete()

    deleted = [(level, public_id)]
    remaining = None
    # Climb while the parent has no child left.
    for ancestor_level, ancestor_row in reversed(chain[:-1]):
        if CHILD_MODELS[ancestor_level].objects.filter(**{resources.PARENT[resources.CHILD_LEVEL[ancestor_level]] + "_id": ancestor_row.pk}).exists():
            remaining = (ancestor_level, ancestor_row.public_id)
            break
        with connection.cursor() as cursor:
            outbox += _release(cursor, "%s", [ancestor_row.public_id], now)
        resources.MODELS[ancestor_level].objects.filter(pk=ancestor_row.pk).delete()
        deleted.append((ancestor_level, ancestor_row.public_id))

    Change.objects.bulk_create(
        [Change(change_type=ChangeType.DELETED, level=lvl, public_id=pid, node=settings.NODE_NAME, date=now)
         for lvl, pid in deleted]
    )
    return outbox, remaining


def _release(cursor, ids_sql, params, now):
    """Move the files of the resources whose public ids `ids_sql` selects to the
    outbox, and drop their attachment, metadata and label rows; the outbox row ids."""
    moment = connection.ops.adapt_datetimefield_value(now)
    cursor.execute(
        f"INSERT INTO {FileDeletion._meta.db_table} (storage_key, created_at) "
        f"SELECT storage_key, %s FROM {Attachment._meta.db_table} WHERE resource_id IN ({ids_sql}) RETURNING id",
        [moment, *params],
    )
    ids = [r[0] for r in cursor.fetchall()]
    cursor.execute(f"DELETE FROM {Attachment._meta.db_table} WHERE resource_id IN ({ids_sql})", params)
    cursor.execute(f"DELETE FROM metadata WHERE resource_id IN ({ids_sql})", params)
    # Orthanc drops a resource's changes with it: /changes never names a resource
    # that is gone, but for the Deleted change appended after (see _delete).
    cursor.execute(f"DELETE FROM {Change._meta.db_table} WHERE public_id IN ({ids_sql})", params)
    cursor.execute(f"DELETE FROM label WHERE resource_id IN ({ids_sql})", params)
    return ids


def queue_removal(outbox_ids):
    """Tell the runtime that the files of these outbox rows may go (signals.files_released);
    whatever is not taken now the housekeeper removes later (redrive)."""
    if outbox_ids:
        signals.files_released.send(sender=None, outbox_ids=outbox_ids)


def remove_files(outbox_ids=None, older_than=None, limit=BATCH):
    """Remove the files of outbox rows (the given ids, or the oldest rows older
    than `older_than` seconds), then the rows; return how many rows were done.

    Idempotent: two workers given the same rows remove each file once and the
    rows once. A key an attachment row still names is never removed.
    """
    rows = FileDeletion.objects.order_by("id")
    if outbox_ids is not None:
        rows = rows.filter(id__in=outbox_ids)
    if older_than is not None:
        rows = rows.filter(created_at__lt=timezone.now() - timezone.timedelta(seconds=older_than))
    try:
        batch = list(rows.values_list("id", "storage_key")[:limit])
        if not batch:
            return 0
        keys = [key for _, key in batch]
        referenced = set(Attachment.objects.filter(storage_key__in=keys).values_list("storage_key", flat=True))
        storage = get_storage()
        for key in keys:
            if key in referenced:
                log.error("outbox names file %s that an attachment still uses: kept", key)
                continue
            storage.delete(key)
        FileDeletion.objects.filter(id__in=[i for i, _ in batch]).delete()
        return len(batch)
    finally:
        if outbox_ids is not None:
            connection.close()


def redrive(older_than=30):
    """Remove the files of outbox rows no worker took within `older_than` seconds."""
    total = 0
    while done := remove_files(older_than=older_than):
        total += done
    return total
