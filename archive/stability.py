"""Stability, cluster-wide: a resource is stable PACS_STABLE_AGE seconds after its
last new instance, whichever node received what.

One conditional UPDATE ... RETURNING per level marks the resources and names
them, and their Stable* changes are written in the same transaction: when two
nodes run it at once, the row lock makes the second re-read `is_stable` and skip
the row, so each stabilisation gives exactly one change in the whole cluster.
"""

from django.conf import settings
from django.db import connection
from django.utils import timezone

from archive.models import Change, ChangeType, Level, Patient, Series, Study
from archive import db

LEVELS = [(Level.SERIES, Series, ChangeType.STABLE_SERIES), (Level.STUDY, Study, ChangeType.STABLE_STUDY),
          (Level.PATIENT, Patient, ChangeType.STABLE_PATIENT)]


def stabilize():
    """Mark what has been quiet for PACS_STABLE_AGE seconds; how many resources."""
    total = 0
    for level, model, change in LEVELS:
        total += db.run(_stabilize_level, level, model, change)
    return total


def _stabilize_level(level, model, change):
    now = timezone.now()
    limit = connection.ops.adapt_datetimefield_value(now - timezone.timedelta(seconds=settings.STABLE_AGE))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {model._meta.db_table} SET is_stable = %s WHERE is_stable = %s AND last_update < %s "
            "RETURNING public_id",
            [True, False, limit],
        )
        ids = [row[0] for row in cursor.fetchall()]
    Change.objects.bulk_create([Change(change_type=change, level=level, public_id=public_id,
                                       node=settings.NODE_NAME, date=now) for public_id in ids])
    return len(ids)
