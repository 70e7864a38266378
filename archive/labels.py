"""Labels on resources (Orthanc 1.12): add, remove, list, and the labels of many
resources at once for their descriptions.

A label is a row (resource, name) under a unique constraint, added with INSERT ...
ON CONFLICT DO NOTHING: two nodes putting labels on one resource at the same time
both succeed and neither loses the other's label (there is no list that each
writer reads, changes and writes back).
"""

import re

from django.db import connection

from archive.errors import InvalidLabel, UnknownResource  # noqa: F401 (raised here, caught by name)
from archive import db, resources
from archive.models import Label

# ServerToolbox::IsValidLabel in Orthanc 1.12: '.' was allowed in a pre-release, not since.
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CONSTRAINTS = ("All", "Any", "None")


def check(name):
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidLabel(
            "A label must be a non-empty, alphanumeric string, possibly with '_' or '-' characters, "
            f"with maximum 64 characters, but got: {name}")
    return name


def labels_of(level, public_id):
    """The sorted labels of a resource; UnknownResource when it is not there."""
    if not resources.MODELS[level].objects.filter(public_id=public_id).exists():
        raise UnknownResource(public_id)
    return sorted(Label.objects.filter(resource_id=public_id).values_list("name", flat=True))


def has_label(level, public_id, name):
    check(name)
    return name in labels_of(level, public_id)


def all_labels():
    """Every label used in the archive, sorted (GET /tools/labels)."""
    return sorted(Label.objects.order_by().values_list("name", flat=True).distinct())


def add_label(level, public_id, name):
    check(name)
    db.run(_add, level, public_id, name)


def _add(level, public_id, name):
    _lock_resource(level, public_id)
    with connection.cursor() as cursor:
        db.insert_unless_exists(cursor, Label, "resource_id, name", level=level, resource_id=public_id, name=name)


def remove_label(level, public_id, name):
    """Remove the label; removing a label the resource does not have is no error (Orthanc)."""
    check(name)
    db.run(_remove, level, public_id, name)


def _remove(level, public_id, name):
    _lock_resource(level, public_id)
    Label.objects.filter(resource_id=public_id, name=name).delete()


def _lock_resource(level, public_id):
    """Hold the resource row until the transaction ends, so a label is never left
    behind by a deletion that commits meanwhile: deletion locks the row FOR UPDATE,
    which waits for this KEY SHARE lock (and this one for it), while writers of
    labels on one resource do not wait for each other."""
    table = resources.MODELS[level]._meta.db_table
    lock = " FOR KEY SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table} WHERE public_id = %s{lock}", [public_id])
        if cursor.fetchone() is None:
            raise UnknownResource(public_id)
