import pytest
from django.test import Client

from tests import servers


@pytest.fixture(autouse=True, scope="session")
def pynetdicom_peers_without_the_reactor_race():
    # The tests' pynetdicom peers run in this process: archive.dimse gives their
    # associations the checkpoint without pynetdicom's race (archive.dimse.ReactorCheckpoint),
    # as it does to the archive's own sends; against a listener that answers within a
    # millisecond, the race lost a C-STORE's answer now and then.
    import archive.dimse  # noqa: F401


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Each in-process test creates its users and authenticates them: the
    # production PBKDF2 cost (~0.5 s a hash here) buys nothing a test checks.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def audit_rows_at_once(settings):
    # The rows of reads and searches would wait for the process's flushing thread,
    # which writes them on a connection of its own, outside the test's transaction
    # (rolled back after it): in this process they are written in their request.
    # tests/archive/test_audit_delay.py covers the waiting, in processes of its own.
    settings.AUDIT_READ_DELAY = 0


@pytest.fixture(autouse=True)
def fresh_audit_memory():
    # The audit trail's per-process memory of its rows (archive/audit.py) would
    # outlive the rows of a test's database, which are rolled back after it.
    yield
    from archive import audit

    audit.forget()


@pytest.fixture(autouse=True)
def fresh_credential_memory():
    # Remembered credentials (pacsweb/access.py) name users of a database that is
    # rolled back after each test: a store trusts them until its own transaction
    # finds the user gone, and a new user of the same name would get one 401.
    yield
    from pacsweb import access

    access.forget_credentials()


@pytest.fixture
def storage_dir(settings, tmp_path):
    settings.STORAGE_DIR = tmp_path / "storage"
    return settings.STORAGE_DIR


@pytest.fixture
def admin_user(db, django_user_model):
    return django_user_model.objects.create_superuser("admin", password=servers.ADMIN_PASSWORD)


@pytest.fixture
def api(admin_user, storage_dir):
    """A REST client authenticated as admin by HTTP Basic, storing under tmp_path."""
    return Client(HTTP_AUTHORIZATION=servers.auth_header())


@pytest.fixture
def server_factory(tmp_path):
    """Start real pacsweb server processes; all are stopped at the end of the test."""
    started = []

    def start(name="node", **kwargs):
        server = servers.Server(tmp_path / name, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def worker_factory():
    """Start background processes of started servers: job workers (default) or
    housekeepers (command="housekeeper"); all are stopped at the end of the test."""
    started = []

    def start(server, command="worker", **settings):
        worker = servers.Worker(server, command=command, **settings)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def listener_factory():
    """Start DICOM listener processes for started servers; all stop at the end of the test."""
    started = []

    def start(server, **kwargs):
        listener = servers.Listener(server, **kwargs)
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()


@pytest.fixture
def postgres_required():
    import os

    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        pytest.fail("this test needs PostgreSQL: run it with `make test`, which starts one")
