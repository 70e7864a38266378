"""Settings: the one place that reads the environment.

Every variable is optional. Unset, pacsweb runs as a single node on embedded
defaults: SQLite and a storage directory under PACS_DATA_DIR, and the Redis that
the launcher starts on a Unix socket there. The table in README.md lists them all.
"""

import json
import os
import secrets
import socket
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name, default=None):
    value = os.environ.get(name, "")
    return value if value != "" else default


def envint(name, default):
    value = env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}")


def envfloat(name, default):
    value = env(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}")


def envbool(name, default):
    value = env(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


DATA_DIR = Path(env("PACS_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
# Where the OHIF viewer's files are unpacked (console/ohif.py), one folder per version.
OHIF_DIR = Path(env("PACS_OHIF_DIR", DATA_DIR / "ohif")).resolve()


def _persistent_secret_key():
    # Generated once per data directory, so sessions survive restarts. A cluster
    # sets SECRET_KEY in the environment so that every node signs alike.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


try:
    SECRET_KEY = env("SECRET_KEY") or _persistent_secret_key()
except FileExistsError:  # another process of this node wrote it first
    SECRET_KEY = (DATA_DIR / "secret_key").read_text().strip()

DEBUG = envbool("PACS_DEBUG", False)
# Unset: the names and addresses of this machine only (pacsweb/browsers.py); a
# node behind a load balancer lists the names clients use ("*": any, as before).
ALLOWED_HOSTS = [h.strip() for h in env("ALLOWED_HOSTS", "*").split(",") if h.strip()]
HOSTS_OF_THIS_MACHINE = env("ALLOWED_HOSTS") is None

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_rq",
    "archive",
    "cluster",
    "dicom",
    "mllp",
    "console",
]

MIDDLEWARE = [
    # First: the API's paths are normalised before anything routes them.
    "api.rest.http.OrthancHttpMiddleware",
    "pacsweb.browsers.BrowserPolicyMiddleware",
    "pacsweb.clients.RealClientMiddleware",
    "pacsweb.limits.BodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Django's sessions, CSRF cookie, session user and messages, for browsers only
    # (pacsweb/scripts.py): a request with its own credentials skips them.
    "pacsweb.scripts.BrowserSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "pacsweb.scripts.BrowserCsrfMiddleware",
    "pacsweb.scripts.BrowserAuthenticationMiddleware",
    "pacsweb.access.AccessMiddleware",
    "pacsweb.scripts.BrowserMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

AUTHENTICATION_BACKENDS = ["cluster.throttle.ThrottledModelBackend"]
# Failed logins of one user name from one client within 5 minutes before that
# client may no longer try that name for 5 minutes (five times as many failures,
# whatever the names, lock the client out). The user keeps logging in from
# elsewhere: an attacker cannot lock an account out (cluster/throttle.py).
LOGIN_FAILURES = envint("PACS_LOGIN_FAILURES", 10)
# Proxies (addresses, CIDR) whose X-Forwarded-For names the real client, for
# throttling and the audit trail (pacsweb/clients.py); gunicorn reads the same
# variable for X-Forwarded-Proto. Never "*" on a node clients reach directly.
FORWARDED_ALLOW_IPS = env("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Behind HTTPS (directly or through a proxy that says so): cookies only over TLS,
# and browsers told to keep to TLS.
HTTPS = envbool("PACS_HTTPS", False)
if HTTPS:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 31536000
# The archive's address as its clients reach it (https://pacs.example.org, maybe with a
# path the proxy strips): the base of every absolute URL it writes (DICOMweb
# RetrieveURL and BulkDataURI). Unset, the base is taken from the request, and
# X-Forwarded-Proto / -Host / -Port count only when the request comes from one of
# FORWARDED_ALLOW_IPS (above): from anyone else they are forgeries.
PUBLIC_URL = (env("PACS_PUBLIC_URL", "") or "").rstrip("/")
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

ROOT_URLCONF = "pacsweb.urls"
WSGI_APPLICATION = "pacsweb.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------

TX_ISOLATION = env("PACS_TX_ISOLATION", "read_committed").lower()
if TX_ISOLATION not in ("read_committed", "serializable"):
    raise ImproperlyConfigured(
        f"PACS_TX_ISOLATION must be read_committed or serializable, not {TX_ISOLATION!r}"
    )
TX_RETRIES = envint("PACS_TX_RETRIES", 10)
DB_POOL_SIZE = envint("PACS_DB_POOL_SIZE", 4)
DB_SERVER_SIDE_BINDING = envbool("PACS_DB_SERVER_SIDE_BINDING", True)


def database_from_url(url):
    """DATABASES['default'] for a postgres:// URL (host may be a socket directory)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured(
            f"DATABASE_URL must start with postgres:// (got {parsed.scheme}://)"
        )
    query = dict(parse_qsl(parsed.query))
    from psycopg import IsolationLevel

    options = {
        "isolation_level": (
            IsolationLevel.SERIALIZABLE
            if TX_ISOLATION == "serializable"
            else IsolationLevel.READ_COMMITTED
        ),
    }
    host = query.pop("host", None) or unquote(parsed.hostname or "")
    # Parameters bound by the server, not quoted into the text by psycopg, and a
    # statement run five times on a connection prepared (psycopg's default, which
    # Django turns off): -9 to -10 % of the web process's CPU per store, read and
    # search (docs/benchmarks.md). Off for a pooler that cannot keep prepared
    # statements (PgBouncer before 1.21 in transaction mode).
    options["server_side_binding"] = DB_SERVER_SIDE_BINDING
    if DB_SERVER_SIDE_BINDING:
        options["prepare_threshold"] = 5
    options.update(query)
    if DB_POOL_SIZE > 0:
        options["pool"] = {"min_size": 1, "max_size": DB_POOL_SIZE, "timeout": 30}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "OPTIONS": options,
        # No check of a pooled connection before each use: it is a round trip
        # per request. A connection lost to a database restart fails its unit of
        # work, which archive.db replays on a new one.
        "CONN_HEALTH_CHECKS": False,
        "TEST": {"NAME": env("PACS_TEST_DATABASE_NAME")},
    }


# One durability setting: a stored file, the folder holding its name and (on the
# embedded SQLite database) the index's commit all reach the disk before a store
# is acknowledged.
STORAGE_FSYNC = envbool("PACS_STORAGE_FSYNC", True)

if env("DATABASE_URL"):
    DATABASES = {"default": database_from_url(env("DATABASE_URL"))}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "pacsweb.sqlite3",
            # A thread keeps its connection: opening one (and running the PRAGMAs
            # below) cost about as much as the rest of a small store.
            "CONN_MAX_AGE": None,
            "OPTIONS": {
                # Writers queue on the lock instead of failing with "database is
                # locked" half-way through a transaction.
                "transaction_mode": "IMMEDIATE",
                "timeout": envfloat("PACS_SQLITE_TIMEOUT", 20),
                # FULL: a commit in WAL mode is synced before it returns. NORMAL
                # syncs only at checkpoints, so a power loss could take back the
                # index rows of acknowledged stores whose files survived.
                "init_command": (
                    "PRAGMA journal_mode=WAL;"
                    f"PRAGMA synchronous={'FULL' if STORAGE_FSYNC else 'NORMAL'};"
                ),
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and jobs --------------------------------------------------------

REDIS_URL = env("REDIS_URL", f"unix://{DATA_DIR / 'redis.sock'}")
# Several clusters (or test runs) may share one Redis: the prefix keeps their
# queues apart.
QUEUE_PREFIX = env("PACS_QUEUE_PREFIX", "pacsweb")
QUEUES = {kind: f"{QUEUE_PREFIX}-{kind}" for kind in ("jobs", "transfers", "deletions")}
RQ_QUEUES = {name: {"URL": REDIS_URL} for name in QUEUES.values()}
# A Running job whose worker has not written a heartbeat for this long is
# re-queued (up to PACS_JOB_ATTEMPTS runs in all), then failed.
JOB_HEARTBEAT_TIMEOUT = envint("PACS_JOB_HEARTBEAT_TIMEOUT", 60)
JOB_ATTEMPTS = envint("PACS_JOB_ATTEMPTS", 2)
HOUSEKEEPER_INTERVAL = envfloat("PACS_HOUSEKEEPER_INTERVAL", 10.0)
# For tests only: while the file named here exists and holds a number N, every job
# run stops after its Nth item and waits (heartbeating) until the file is removed,
# so a test can act on a job that is certainly in the middle of its work.
JOB_HOLD_FILE = env("PACS_TEST_JOB_HOLD_FILE", "")

# --- Storage and archive behaviour -----------------------------------------

STORAGE_DIR = Path(env("PACS_STORAGE_DIR", DATA_DIR / "storage")).resolve()
# A file under a temporary name, or a stored file no index row refers to, older
# than this is what a crash left behind: the housekeeper removes it.
ORPHAN_GRACE_SECONDS = envint("PACS_ORPHAN_GRACE", 3600)
# Below this much free space in the storage area, stores are refused (507, DIMSE
# 0xA700) and /readyz fails; a reserve file this large beside a SQLite database
# is given back when a delete finds the disk full (archive/space.py).
MIN_FREE_BYTES = envint("PACS_MIN_FREE_MB", 500) * 1024 * 1024
DISK_RESERVE_BYTES = envint("PACS_DISK_RESERVE_MB", 32) * 1024 * 1024
STABLE_AGE = envint("PACS_STABLE_AGE", 60)
# A bounded archive (Orthanc's MaximumStorageSize in MB, MaximumPatientCount,
# MaximumStorageMode): 0 is no bound; Recycle removes the least recently updated
# unprotected patients to make room, Reject refuses the store.
MAXIMUM_STORAGE_SIZE = envint("PACS_MAXIMUM_STORAGE_SIZE", 0)
MAXIMUM_PATIENT_COUNT = envint("PACS_MAXIMUM_PATIENT_COUNT", 0)
MAXIMUM_STORAGE_MODE = env("PACS_MAXIMUM_STORAGE_MODE", "Recycle")
if MAXIMUM_STORAGE_MODE not in ("Recycle", "Reject"):
    raise ImproperlyConfigured("PACS_MAXIMUM_STORAGE_MODE must be Recycle or Reject")
ARCHIVE_CACHE_SIZE = envint("PACS_ARCHIVE_CACHE_SIZE", 10)
ARCHIVE_TTL = envint("PACS_ARCHIVE_TTL", 3600)
# zlib level of the ZIP archives: 0 stores the files as they are (fastest),
# 1-9 deflate them (Orthanc deflates).
ZIP_LEVEL = envint("PACS_ZIP_LEVEL", 1)
if not 0 <= ZIP_LEVEL <= 9:
    raise ImproperlyConfigured("PACS_ZIP_LEVEL is between 0 and 9")
JOBS_HISTORY_SIZE = envint("PACS_JOBS_HISTORY_SIZE", 100)
MAX_UPLOAD_BYTES = envint("PACS_MAX_UPLOAD_MB", 4096) * 1024 * 1024
# Declared size of one frame (Rows x Columns x SamplesPerPixel x BitsAllocated)
# beyond which an instance is refused at ingest: a 1 MB compressed upload could
# declare a 1 GiB frame that every preview would then try to decode.
MAX_FRAME_BYTES = envint("PACS_MAX_FRAME_MB", 256) * 1024 * 1024
# Frames above this many pixels (and viewports above it) are not rendered (PNG,
# JPEG previews, thumbnails): rendering holds a frame several times in float64.
MAX_RENDER_PIXELS = int(envfloat("PACS_MAX_RENDER_MPIXELS", 16) * 2**20)
# A ZIP upload: files at most, and how many times a member (past 1 MB) may expand.
ZIP_MAX_MEMBERS = envint("PACS_ZIP_MAX_MEMBERS", 100000)
ZIP_MAX_RATIO = envint("PACS_ZIP_MAX_RATIO", 100)
# Every body that is not an upload (JSON, forms, short texts) is read whole into
# memory: this bounds it (pacsweb/limits.py).
MAX_REQUEST_BYTES = envint("PACS_MAX_REQUEST_KB", 4096) * 1024
# Seconds a client may leave its connection silent in the middle of a request (or
# not read an answer) before the web server drops it: slow clients cannot hold
# every thread (deploy/gunicorn.conf.py sets it on the listening sockets).
CLIENT_TIMEOUT = envint("PACS_CLIENT_TIMEOUT", 60)
# An upload must arrive at this average rate (after its first 10 s), whatever its
# pauses: a client trickling a body cannot hold a thread for ever (archive/spool.py).
# The request head has PACS_HTTP_HEADER_TIMEOUT (read by pacsweb/webworker.py).
MIN_UPLOAD_RATE = envint("PACS_MIN_UPLOAD_RATE_KB", 8) * 1024

# --- Node ------------------------------------------------------------------

NODE_NAME = env("PACS_NODE_NAME", socket.gethostname())
HTTP_PORT = envint("PACS_HTTP_PORT", 8000)
# Where other nodes and administrators reach this node directly (the registry shows it).
NODE_URL = env("PACS_NODE_URL", f"http://{socket.gethostname()}:{HTTP_PORT}")
# Every process writes its registry row this often; a node is "stale" after 3
# missed beats, "down" after 12, and forgotten after PACS_NODE_FORGET seconds.
NODE_HEARTBEAT = envfloat("PACS_NODE_HEARTBEAT", 5.0)
NODE_FORGET = envint("PACS_NODE_FORGET", 86400)
DICOM_PORT = envint("PACS_DICOM_PORT", 11112)
AE_TITLE = env("PACS_AE_TITLE", "PACSWEB")
if len(AE_TITLE) > 16:
    raise ImproperlyConfigured("PACS_AE_TITLE is at most 16 characters")
ADMIN_PASSWORD = env("PACS_ADMIN_PASSWORD")
# A reader's repeated reads of one study (or patient) within this many seconds are one
# audit row: the first view of the study, not one row per frame or thumbnail (0: every read).
AUDIT_READ_WINDOW = envint("PACS_AUDIT_READ_WINDOW", 900)
# The audit rows of reads and searches wait this many seconds in their process, to be
# written together (0: each in its request); a crashed process loses at most these.
AUDIT_READ_DELAY = envfloat("PACS_AUDIT_READ_DELAY", 1.0)
# The rules a password set through the console's Users page or `manage.py user`
# (or changepassword) must follow; the first admin's PACS_ADMIN_PASSWORD is the operator's choice.
PASSWORD_MIN_LENGTH = envint("PACS_PASSWORD_MIN_LENGTH", 10)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": PASSWORD_MIN_LENGTH}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# /metrics without authentication, for a Prometheus on a trusted network.
METRICS_PUBLIC = envbool("PACS_METRICS_PUBLIC", False)

# --- DICOM listener (Orthanc's options of the same meaning in brackets) -----

# Unknown AEs may still echo / store [DicomAlwaysAllowEcho, DicomAlwaysAllowStore];
# find, move and get need a modality entry that allows them.
DICOM_ALWAYS_ALLOW_ECHO = envbool("PACS_DICOM_ALWAYS_ALLOW_ECHO", True)
DICOM_ALWAYS_ALLOW_STORE = envbool("PACS_DICOM_ALWAYS_ALLOW_STORE", True)
DICOM_CHECK_MODALITY_HOST = envbool("PACS_DICOM_CHECK_MODALITY_HOST", False)
DICOM_CHECK_CALLED_AET = envbool("PACS_DICOM_CHECK_CALLED_AET", False)
DICOM_MAX_ASSOCIATIONS = envint("PACS_DICOM_MAX_ASSOCIATIONS", 64)
# Answers of a search (QIDO-RS, /tools/find, C-FIND) that does not ask for fewer /
# at most, whatever it asks [LimitFindResults, LimitFindInstances] (archive.query).
FIND_DEFAULT_LIMIT = envint("PACS_FIND_DEFAULT_LIMIT", 1000)
FIND_MAX_LIMIT = envint("PACS_FIND_MAX_LIMIT", 10000)
# C-FIND answers before the final 0xA700 (0: PACS_FIND_MAX_LIMIT).
DICOM_MAX_FIND_ANSWERS = min(envint("PACS_DICOM_MAX_FIND_ANSWERS", FIND_DEFAULT_LIMIT) or FIND_MAX_LIMIT,
                             FIND_MAX_LIMIT)
# A matching value may hold this many wildcards (* and ?), a list this many values:
# beyond, the query is refused (400 / C-FIND 0xC000) instead of costing the database.
QUERY_MAX_WILDCARDS = envint("PACS_QUERY_MAX_WILDCARDS", 32)
QUERY_MAX_LIST = envint("PACS_QUERY_MAX_LIST", 10000)
DICOM_TIMEOUT = envint("PACS_DICOM_TIMEOUT", 30)  # [DicomScpTimeout]
# An association request must arrive whole within this many seconds, and at most
# this many may be arriving at a time from one address / in all (dicom/scp.py).
DICOM_ASSOCIATE_TIMEOUT = envfloat("PACS_DICOM_ASSOCIATE_TIMEOUT", 10)
DICOM_HALF_OPEN_PER_ADDRESS = envint("PACS_DICOM_HALF_OPEN_PER_ADDRESS", 8)
DICOM_HALF_OPEN_MAX = envint("PACS_DICOM_HALF_OPEN_MAX", 64)
DICOM_MAX_PDU = envint("PACS_DICOM_MAX_PDU", 262144)
# Storage SOP classes the listener accepts: "all" (the current standard's and the
# retired ones), "current", or a comma-separated list of SOP Class UIDs.
DICOM_STORAGE_CLASSES = env("PACS_DICOM_STORAGE_CLASSES", "all")
# Listener processes per node, sharing the port (SO_REUSEPORT): one Python
# process stores on one core at a time.
DICOM_PROCESSES = envint("PACS_DICOM_PROCESSES", min(4, os.cpu_count() or 1))
# Optional JSON file of modalities loaded into the database at start, in
# Orthanc's DicomModalities format: {"name": ["AET", "host", port], ...}.
MODALITIES_FILE = env("PACS_MODALITIES_FILE")

# --- HL7 listener (orders and patient updates from the RIS, over MLLP) --------

HL7_PORT = envint("PACS_HL7_PORT", 2575)


def _hl7_fields(text):
    # Overrides of the HL7 → worklist field table (mllp/fields.py): a JSON object
    # of field name → HL7 path or list of paths tried in turn, e.g.
    # {"scheduled_station_aet": ["OBR-21", "ORC-18"]}. The listener checks the names.
    if not text:
        return {}
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImproperlyConfigured(f"PACS_HL7_FIELDS is not valid JSON: {error}")
    if not isinstance(fields, dict) or not all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(p, str) for p in v))
            for v in fields.values()):
        raise ImproperlyConfigured('PACS_HL7_FIELDS must map field names to a path or a list of paths, '
                                   'e.g. {"scheduled_station_aet": ["OBR-21", "ORC-18"]}')
    return {name: [value] if isinstance(value, str) else value for name, value in fields.items()}


HL7_FIELDS = _hl7_fields(env("PACS_HL7_FIELDS"))
VERSION = "0.1.0"

# --- Web -------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TZ", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Served straight from the apps' and the project's static folders: no
# collectstatic step before a node can start.
WHITENOISE_USE_FINDERS = True
# Where a signed-out browser is sent: the console's sign-in page (the admin has its own).
LOGIN_URL = "/ui/login/"

# Request bodies are streamed to a temporary file in the data dir (same
# filesystem as nothing else: the ingest path copies from it) once past 2.5 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = None
FILE_UPLOAD_TEMP_DIR = str(DATA_DIR / "tmp")
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(name)s] " + NODE_NAME + " %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("PACS_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # pynetdicom logs every PDU at INFO; its warnings and errors are enough.
        "pynetdicom": {"level": env("PACS_DICOM_LOG_LEVEL", "WARNING")},
    },
}
