"""Deleting a resource: index rows in one unit of work, then its files.

Like Orthanc, deleting the last child of a resource deletes the resource too, and
the answer names the nearest ancestor that remains. Files are removed only after
the transaction that made them unreferenced has committed.
"""

from django.conf import settings
from django.db import connection
from django.utils import timezone

from archive import resources
from archive.models import Attachment, Change, ChangeType, Instance, Level, Metadata, Series, Study
from archive.storage import get_storage
from pacsweb import db

CHILD_MODELS = {Level.PATIENT: Study, Level.STUDY: Series, Level.SERIES: Instance}


class UnknownResource(Exception):
    pass


def delete_resource(level, public_id):
    """Delete the resource and everything below it; return the remaining ancestor
    as (level, public_id), or None when nothing above it remains."""
    keys, remaining = db.run(_delete, level, public_id)
    storage = get_storage()
    for key in keys:
        storage.delete(key)
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

    doomed = {level: [public_id]}
    for child_level in resources.ORDER[resources.ORDER.index(level) + 1:]:
        doomed[child_level] = list(
            resources.MODELS[child_level].objects.filter(**{resources.BY_ANCESTOR[child_level][level]: row.pk})
            .values_list("public_id", flat=True)
        )
    for child_level in reversed(resources.ORDER[resources.ORDER.index(level) + 1:]):
        resources.MODELS[child_level].objects.filter(**{resources.BY_ANCESTOR[child_level][level]: row.pk}).delete()
    model.objects.filter(pk=row.pk).delete()

    deleted = [(level, public_id)]
    remaining = None
    # Climb while the parent has no child left.
    for ancestor_level, ancestor_row in reversed(chain[:-1]):
        if CHILD_MODELS[ancestor_level].objects.filter(**{resources.PARENT[resources.CHILD_LEVEL[ancestor_level]] + "_id": ancestor_row.pk}).exists():
            remaining = (ancestor_level, ancestor_row.public_id)
            break
        doomed.setdefault(ancestor_level, []).append(ancestor_row.public_id)
        resources.MODELS[ancestor_level].objects.filter(pk=ancestor_row.pk).delete()
        deleted.append((ancestor_level, ancestor_row.public_id))

    all_ids = [pid for ids in doomed.values() for pid in ids]
    keys = []
    for start in range(0, len(all_ids), 500):
        batch = all_ids[start:start + 500]
        keys += list(Attachment.objects.filter(resource_id__in=batch).values_list("storage_key", flat=True))
        Attachment.objects.filter(resource_id__in=batch).delete()
        Metadata.objects.filter(resource_id__in=batch).delete()
    now = timezone.now()
    Change.objects.bulk_create(
        [Change(change_type=ChangeType.DELETED, level=lvl, public_id=pid, node=settings.NODE_NAME, date=now)
         for lvl, pid in deleted]
    )
    return keys, remaining
