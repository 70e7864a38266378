"""statements(): the cursor of a unit's own SQL, on PostgreSQL Django's and on SQLite
the database's own (tests/archive/test_on_sqlite.py runs this file there too)."""

import pytest
from django.db import DatabaseError, IntegrityError, transaction

from archive.db import statements
from archive.models import Change, ChangeType, Level


def test_parameters_go_in_by_their_markers(db):
    with statements() as cursor:
        cursor.execute("SELECT %s, %s, %s", [1, "a'b", None])
        assert tuple(cursor.fetchone()) == (1, "a'b", None)
        cursor.execute("SELECT 2")
        assert [tuple(row) for row in cursor.fetchall()] == [(2,)]


def test_rows_written_are_the_units(db):
    with transaction.atomic():
        with statements() as cursor:
            cursor.executemany(f"INSERT INTO {Change._meta.db_table} (change_type, level, public_id, node, date) "
                               "VALUES (%s, %s, %s, %s, %s)",
                               [(ChangeType.NEW_INSTANCE, Level.INSTANCE, f"id-{n}", "node", "2026-01-01")
                                for n in range(3)])
    assert sorted(Change.objects.values_list("public_id", flat=True)) == ["id-0", "id-1", "id-2"]


def test_the_drivers_errors_are_djangos(db):
    # The runner's replays look for Django's errors (a locked SQLite, a PostgreSQL conflict).
    with pytest.raises(DatabaseError) as raised:
        with transaction.atomic():
            with statements() as cursor:
                cursor.execute("SELECT no_such_column FROM %s" % Change._meta.db_table)
    assert type(raised.value).__module__ == "django.db.utils"
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            with statements() as cursor:
                cursor.execute(f"INSERT INTO {Change._meta.db_table} (change_type, level, public_id, node, date) "
                               "VALUES (%s, %s, %s, %s, %s)", [None, None, None, None, None])

