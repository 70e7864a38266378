"""db.run(): the one transaction runner, and its replays on a concurrency conflict."""

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from archive import db, signals
from archive.errors import DatabaseBusy
from archive.models import Change, ChangeType, Level

# The runner opens the outermost transaction itself: each test runs outside of one.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    # The runner's waits between replays only spread real writers apart.
    monkeypatch.setattr(db, "BACKOFF_STEP", 0)


@pytest.fixture
def counted():
    names = []

    def receiver(sender, name, amount, labels, **kwargs):
        names.append(name)

    signals.counted.connect(receiver, weak=False)
    yield names
    signals.counted.disconnect(receiver)


def conflict():
    raise db.Retry("a concurrent writer got in the way")


def bug():
    raise ValueError("a bug in the unit")


class Unit:
    """A unit of work that writes one row, then calls `fail()` (which raises) in its
    first `failures` runs; it counts its runs."""

    def __init__(self, failures=0, fail=conflict):
        self.failures = failures
        self.fail = fail
        self.runs = 0

    def __call__(self, public_id):
        self.runs += 1
        Change.objects.create(change_type=ChangeType.DELETED, level=Level.STUDY, public_id=public_id,
                              date=timezone.now())
        if self.runs <= self.failures:
            self.fail()
        return f"done after {self.runs}"


def rows(public_id):
    return Change.objects.filter(public_id=public_id).count()


def test_run_returns_what_the_unit_returns():
    assert db.run(Unit(), "one") == "done after 1"
    assert rows("one") == 1


def test_unit_that_conflicts_is_replayed_until_it_succeeds():
    unit = Unit(failures=3)
    assert db.run(unit, "replayed", retries=5) == "done after 4"
    assert unit.runs == 4
    assert rows("replayed") == 1  # the rows of the failed runs were rolled back


def test_unit_that_always_conflicts_gives_database_busy_after_the_retries():
    unit = Unit(failures=100)
    with pytest.raises(DatabaseBusy):
        db.run(unit, "busy", retries=3)
    assert unit.runs == 4
    assert rows("busy") == 0


def test_retries_default_to_the_setting(settings):
    settings.TX_RETRIES = 2
    unit = Unit(failures=100)
    with pytest.raises(DatabaseBusy):
        db.run(unit, "busy")
    assert unit.runs == 3


def test_other_error_propagates_at_once_and_rolls_back():
    unit = Unit(failures=1, fail=bug)
    with pytest.raises(ValueError, match="a bug in the unit"):
        db.run(unit, "failed", retries=5)
    assert unit.runs == 1
    assert rows("failed") == 0


def raise_sqlstate(condition):
    """Make PostgreSQL itself report the error, as a real conflict would."""
    with connection.cursor() as cursor:
        cursor.execute(f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{condition}'; END $$")


@pytest.mark.parametrize("condition", ["serialization_failure", "deadlock_detected", "unique_violation"])
def test_database_conflicts_are_replayed(postgres_required, condition):
    unit = Unit(failures=2, fail=lambda: raise_sqlstate(condition))
    assert db.run(unit, "conflict", retries=5) == "done after 3"
    assert rows("conflict") == 1


def test_database_error_that_is_no_conflict_is_not_replayed(postgres_required):
    unit = Unit(failures=1, fail=lambda: raise_sqlstate("division_by_zero"))
    with pytest.raises(DatabaseError):
        db.run(unit, "division", retries=5)
    assert unit.runs == 1
    assert rows("division") == 0


def test_replays_are_counted(counted):
    db.run(Unit(failures=2), "counted", retries=5)
    assert counted.count("pacs_transaction_replays_total") == 2
    assert "pacs_database_busy_total" not in counted


def test_giving_up_is_counted(counted):
    with pytest.raises(DatabaseBusy):
        db.run(Unit(failures=100), "counted", retries=1)
    assert counted.count("pacs_transaction_replays_total") == 1
    assert counted.count("pacs_database_busy_total") == 1


def test_unit_cannot_run_inside_another_transaction():
    # A replay inside an outer transaction would replay half of the work.
    with pytest.raises(RuntimeError, match="durable"):
        with transaction.atomic():
            db.run(Unit(), "nested")
    assert rows("nested") == 0


def test_a_unit_whose_connection_the_database_dropped_runs_again_on_a_new_one(storage_dir):
    # What a restart or failover of PostgreSQL does to a pooled connection: pooled
    # connections are not checked before use, so the runner must replay.
    from archive import ingest
    from archive.models import Instance
    from tests.dicomgen import make_instance, uid
    from tests.servers import admin_connection

    origin = ingest.Origin.http("127.0.0.1", "admin")
    ingest.store(make_instance(sop_uid=uid("lost-connection", 1)), origin)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    with admin_connection() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend])
    result = ingest.store(make_instance(sop_uid=uid("lost-connection", 2)), origin)
    assert result.status == ingest.SUCCESS
    assert Instance.objects.count() == 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != backend


def test_postgresql_binds_parameters_and_prepares_what_repeats(postgres_required, monkeypatch):
    import psycopg

    from pacsweb import settings as configured

    assert not isinstance(connection.cursor().cursor, psycopg.ClientCursor)
    with connection.cursor() as cursor:
        for _ in range(6):  # psycopg prepares a statement at its fifth run on a connection
            cursor.execute("SELECT count(*) FROM instance WHERE sop_instance_uid = %s", ["1.2.3"])
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                       ["%FROM instance WHERE sop_instance_uid = $1%"])
        assert cursor.fetchone()[0] == 1
    # Off for a pooler that cannot keep prepared statements: psycopg quotes the parameters itself.
    url = "postgres://user@localhost/archive"
    assert configured.database_from_url(url)["OPTIONS"]["server_side_binding"] is True
    monkeypatch.setattr(configured, "DB_SERVER_SIDE_BINDING", False)
    options = configured.database_from_url(url)["OPTIONS"]
    assert options["server_side_binding"] is False and "prepare_threshold" not in options
