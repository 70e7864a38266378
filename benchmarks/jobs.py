"""Jobs benchmark: synchronous ZIP archives and DELETE of studies, pacsweb and Orthanc side by side.

    .venv/bin/python -m benchmarks.jobs                       # a 500-instance study; DELETE of 1, 500, 2000
    .venv/bin/python -m benchmarks.jobs --big-study 20 --delete-sizes 1 50
    .venv/bin/python -m benchmarks.jobs --targets pacsweb-postgres orthanc-sqlite

Every target (pacsweb on PostgreSQL, with one job worker process beside its
gunicorn; Orthanc on SQLite and on PostgreSQL through its index plugin) is
started fresh and measured in turn:

1. ZIP archive: one study of --big-study 512x512 CT instances (~0.5 MB each; their
   pixels CT-like noise that deflate takes to about a third, see ct_image) is
   stored through POST /instances (4 clients, one instance per request), then
   GET /studies/{id}/archive is read whole, --repetitions times, one at a time,
   while the resident memory of the server (gunicorn's master and workers summed;
   Orthanc's single process) is sampled every 50 ms. Each ZIP is opened and must
   hold one .dcm member per instance, of the stored files' total size (the first
   one is also CRC-checked). Before the clock runs, the archives of 4 one-instance
   studies are fetched at once over new connections, twice, so that every
   gunicorn worker has likely served the route.
2. DELETE /studies/{id} of studies of --delete-sizes 64x64 instances (~9 kB),
   stored through POST /instances with ZIP bodies of at most 500 files (up to 4
   at once); 3 studies per size up to 500 instances, 2 above. One DELETE at a
   time; the study's files (found as those its upload added to the storage
   directory) are then looked for until they are gone (pacsweb removes them after
   the answer, in its job worker; Orthanc inside the DELETE), before the next one. 3 one-instance studies are deleted at once
   before, unmeasured, for the same reason as above.

The PostgreSQL server is the one in DATABASE_URL, and the Redis of pacsweb's job
queues the one in REDIS_URL; throwaway embedded ones when those are unset.
Everything runs on this machine: the client shares the CPUs with the server
under test, so figures compare targets with each other, not with a deployment.
Exits 1 when a request failed, a ZIP is wrong, or files or instances are left.
"""

import argparse
import contextlib
import datetime
import http.client
import io
import json
import os
import platform
import queue
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from urllib.parse import urlparse

import numpy
import psycopg
import redis

from archive.identifiers import study_public_id
from benchmarks import ingest
from benchmarks.rest import RssSampler
from tests import orthanc, servers
from tests.dicomgen import make_instance, uid
from tests.services import EmbeddedRedis, remove, scratch_dir

TARGETS = ("pacsweb-postgres", "orthanc-sqlite", "orthanc-postgres")  # named as in benchmarks.ingest.TARGETS
LARGE, SMALL = 512, 64  # rows = columns of the 16-bit CT instances
CONCURRENCY = 4  # clients of the uploads
ZIP_MEMBERS = 500  # DICOM files per ZIP body of POST /instances
WARMUP_CONNECTIONS = 4  # parallel new connections, twice, fetching a small archive before the clock
RSS_INTERVAL = 0.05
POLL_INTERVAL = 0.005  # seconds between two checks of a deleted study's files
REMOVAL_TIMEOUT = 600  # seconds the files of a deleted study may take to go
REQUEST_TIMEOUT = 900
SEED = 20260115


def main():
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    args = parse_args()
    print_header(args)
    data = Data(args.big_study, args.delete_sizes, args.pixels)
    with ingest.postgres_server(args.targets) as postgres_url, redis_server(args.targets) as redis_url:
        if postgres_url:
            with psycopg.connect(postgres_url) as conn:
                print(f"PostgreSQL: {conn.info.parameter_status('server_version')} "
                      f"at {conn.info.host} port {conn.info.port}")
        if redis_url:
            with contextlib.closing(redis.Redis.from_url(redis_url)) as client:
                print(f"Redis: {client.info()['redis_version']} at {redis_url}")
        pixels = "CT-like noise" if args.pixels == "ct" else "tests.dicomgen's repeated block"
        print(f"data: a study of {args.big_study} instances of {LARGE}x{LARGE} ({data.big_mb():.1f} MB, pixels: "
              f"{pixels}); "
              f"studies of {', '.join(map(str, args.delete_sizes))} instances of {SMALL}x{SMALL} to delete "
              f"({len(data.delete_studies)} studies, {data.delete_mb():.1f} MB); "
              f"generated in {data.generation_seconds:.1f} s", flush=True)
        print("reference: zlib deflates 20 of the big study's files (raw deflate, as in a ZIP) to "
              + ", ".join(f"{ratio:.3f} at level {level}" for level, ratio in deflate_ratios(data.big.files[:20]))
              + " of their size", flush=True)
        results = {}
        for name in args.targets:
            results[name] = measure_target(name, args, postgres_url, data)
    failed = report(args, data, results)
    print(f"\nload average at the end: {load_average()}")
    if failed:
        print("FAILED: some requests failed, a ZIP is wrong or some files or instances were left (see above)")
    return 1 if failed else 0


def _stop_on_sigterm(signum, frame):
    # `kill` or a time-out: unwind, so that every server started is stopped.
    raise SystemExit(128 + signum)


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.jobs", description=__doc__.split("\n")[0])
    parser.add_argument("--big-study", type=int, default=500,
                        help=f"{LARGE}x{LARGE} instances of the study fetched as a ZIP (default 500)")
    parser.add_argument("--pixels", choices=("ct", "pattern"), default="ct",
                        help="pixels of the big study: CT-like noise (default), or tests.dicomgen's repeated "
                             "32-byte block, which deflate shrinks ~250 times")
    parser.add_argument("--repetitions", type=int, default=3, help="ZIP downloads of that study (default 3)")
    parser.add_argument("--delete-sizes", nargs="+", type=int, default=[1, 500, 2000],
                        help="instances of the studies deleted (default 1 500 2000)")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--workers", type=int, default=2, help="pacsweb gunicorn processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="pacsweb threads per process (default 4)")
    args = parser.parse_args()
    if args.big_study < 1 or args.repetitions < 1 or min(args.delete_sizes) < 1:
        parser.error("--big-study, --repetitions and --delete-sizes must be at least 1")
    return args


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_header(args):
    command = shlex.join([os.path.relpath(sys.executable), "-m", "benchmarks.jobs", *sys.argv[1:]])
    print(f"command: {command}")
    print(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M:%S} UTC")
    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {ingest.cpu_model()}, "
          f"{ingest.memory_gb():.1f} GB RAM, load average at the start: {load_average()}")
    plugin = ""
    if "orthanc-postgres" in args.targets:
        plugin = ", Orthanc PostgreSQL plugin " + (subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "orthanc-postgresql"],
            capture_output=True, text=True, check=False).stdout or "unknown")
    print(f"software: Python {platform.python_version()}, pacsweb {ingest.git_revision()}, Django "
          f"{package_version('django')}, gunicorn {package_version('gunicorn')}, rq {package_version('rq')}, "
          f"Orthanc {orthanc.version()}{plugin}")
    # The servers inherit this environment: a PACS_* variable set here changes them.
    inherited = ", ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("PACS_"))
    print(f"pacsweb: gunicorn gthread, {args.workers} workers x {args.threads} threads, one job worker process "
          f"(manage.py worker), "
          + (f"settings from the environment: {inherited}" if inherited else
             "other settings at their defaults (PACS_ZIP_LEVEL 1, fsync on, PostgreSQL pool of 4 per process)"))
    print("Orthanc: Debian package defaults (fsync on, HTTP threads 50, synchronous ZIP streamed, "
          "PostgreSQL index plugin with 1 connection, files on the filesystem in both kinds)")
    print(f"method: every target fresh; ZIP read whole, one download at a time, after 2 x {WARMUP_CONNECTIONS} "
          f"unmeasured parallel ones of 1-instance studies; 1st byte = response headers received; MB = 10^6 bytes; "
          f"RSS = resident set, summed over gunicorn's processes (shared pages counted in each), sampled every "
          f"{RSS_INTERVAL * 1000:.0f} ms; DELETE one at a time, timed by the client, after {WARMUP_CONNECTIONS - 1} unmeasured parallel ones; "
          f"files gone = from the start of the DELETE until none of the study's files is in the storage "
          f"directory (checked every {POLL_INTERVAL * 1000:.0f} ms)")
    print("NOTE: preliminary figures - client and servers share this machine, which may be running other work.")


@contextlib.contextmanager
def redis_server(targets):
    """The URL of the Redis pacsweb's job queues use (None when no target needs one)."""
    if not any(t.startswith("pacsweb") for t in targets):
        yield None
    elif os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
    else:
        directory = scratch_dir("bench-redis-")
        server = None
        try:
            server = EmbeddedRedis(directory)
            # pacsweb's servers and workers take it from the environment they inherit.
            os.environ["REDIS_URL"] = server.url
            yield server.url
        finally:
            os.environ.pop("REDIS_URL", None)
            if server is not None:
                server.stop()
            remove(directory)


# --- the data ---------------------------------------------------------------------


@dataclass
class Study:
    patient_id: str
    study_uid: str
    files: list  # Part 10 bytes, one per instance

    @property
    def public_id(self):
        return study_public_id(self.patient_id, self.study_uid)

    @property
    def size(self):
        return sum(map(len, self.files))

    def zip_bodies(self):
        """POST /instances bodies: ZIPs (stored, not deflated) of at most ZIP_MEMBERS files, with their counts."""
        bodies = []
        for start in range(0, len(self.files), ZIP_MEMBERS):
            chunk = self.files[start:start + ZIP_MEMBERS]
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
                for number, file in enumerate(chunk, start):
                    archive.writestr(f"{number:05d}.dcm", file)
            bodies.append((out.getvalue(), len(chunk)))
        return bodies


def make_study(label, count, side, ct_pixels=False):
    patient_id = f"JOBS-{label}"
    study_uid = uid("bench-jobs", label)
    series_uid = uid(study_uid, 1)
    files = []
    for i in range(1, count + 1):
        file = make_instance(patient_id=patient_id, patient_name=f"JOBS^{label}", study_uid=study_uid,
                             series_uid=series_uid, sop_uid=uid(series_uid, i), instance_number=i,
                             rows=side, columns=side, accession_number=label[:16])
        if ct_pixels:
            # Pixel Data is the file's last element, its value the last bytes.
            pixels = ct_image(i, side)
            file = file[:-len(pixels)] + pixels
        files.append(file)
    return Study(patient_id, study_uid, files)


def ct_image(number, side):
    """12-bit pixels compressing like a CT slice's: air around an elliptic body of
    soft tissue with noise (deflate takes them to ~1/3 of their size).
    tests.dicomgen's own pixels repeat a 32-byte block: a ZIP of them would be
    ~1/250 of the files, which says nothing of how fast a server deflates a study."""
    rng = numpy.random.default_rng([SEED, number])
    y, x = numpy.ogrid[:side, :side]
    body = ((x - side / 2) / (0.46 * side)) ** 2 + ((y - side / 2) / (0.38 * side)) ** 2 <= 1
    image = numpy.full((side, side), 24, dtype="<u2")  # -1000 HU with the rescale intercept -1024
    image[body] = numpy.clip(rng.normal(1064, 25, size=(side, side))[body], 0, 4095)  # ~40 HU
    return image.tobytes()


def delete_repetitions(size):
    return 3 if size <= 500 else 2


def deflate_ratios(files):
    """(zlib level, compressed / original) of the files: which level a server's ZIP used shows in its ratio."""
    data = b"".join(files)
    ratios = []
    for level in (1, 6, 9):
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        ratios.append((level, len(compressor.compress(data) + compressor.flush()) / len(data)))
    return ratios


class Data:
    """The studies every target gets."""

    def __init__(self, big, delete_sizes, pixels):
        started = time.perf_counter()
        self.big = make_study("BIG", big, LARGE, ct_pixels=pixels == "ct")
        self.warmup = [make_study(f"WARMUP{i}", 1, SMALL) for i in range(WARMUP_CONNECTIONS)]
        self.delete_studies = [make_study(f"DEL{size}-{n}", size, SMALL)
                               for size in dict.fromkeys(delete_sizes) for n in range(delete_repetitions(size))]
        self.bodies = {study.public_id: study.zip_bodies() for study in self.warmup + self.delete_studies}
        self.generation_seconds = time.perf_counter() - started

    def big_mb(self):
        return self.big.size / 1e6

    def delete_mb(self):
        return sum(s.size for s in self.delete_studies) / 1e6


# --- the servers ------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    auth_header: str
    pid: int  # the server process; gunicorn's workers are its children
    storage: Path  # where the DICOM files are
    skipped: tuple  # folders of `storage` that hold no DICOM file
    logs: Callable[[], str]  # the server's (and worker's) log so far, shown when something fails

    def connection(self):
        address = urlparse(self.url)
        return http.client.HTTPConnection(address.hostname, address.port, timeout=REQUEST_TIMEOUT)

    def files(self):
        """The paths of the DICOM files in the storage directory."""
        found = set()
        for root, folders, files in os.walk(self.storage):
            if root == str(self.storage):
                folders[:] = [f for f in folders if f not in self.skipped]
            found.update(os.path.join(root, f) for f in files)
        return found


@contextlib.contextmanager
def start(name, args, postgres_url):
    _, database = ingest.TARGETS[name]
    if name.startswith("orthanc"):
        with orthanc.OrthancServer(database, postgres_url=postgres_url) as server:
            # OrthancServer puts StorageDirectory there (and the SQLite index beside it).
            yield Target(name, server.url, server.auth_header, server.process.pid, server.directory / "storage", (),
                         server.log)
        return
    directory = scratch_dir("bench-pacsweb-")
    server = worker = None
    try:
        server = servers.Server(directory, database=database, workers=args.workers, threads=args.threads)
        worker = servers.Worker(server)

        def logs():
            return f"{server.output()}\n--- job worker log:\n{worker.output()}"

        yield Target(name, server.url, servers.auth_header(), server.process.pid, server.data_dir / "storage",
                     ("tmp", "archives"), logs)
    finally:
        if worker is not None:
            worker.stop()
        if server is not None:
            server.stop()
            name = urlparse(server.database_url).path.lstrip("/")
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        remove(directory)


# --- requests ---------------------------------------------------------------------


def send_all(target, bodies, send, connections=CONCURRENCY):
    """Send `bodies` with `send(conn, auth_header, body)` (None or an error message)
    over `connections` keep-alive connections taking from a shared queue; the errors."""
    work = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    errors = []  # list.append is atomic: the threads share it

    def client():
        conn = target.connection()
        try:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                if error := send(conn, target.auth_header, body):
                    errors.append(error)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(min(connections, len(bodies)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def post_zip(conn, auth_header, body):
    """Store the members of a ZIP body; None when every one was stored, else what went wrong."""
    data, members = body
    try:
        conn.request("POST", "/instances", body=data,
                     headers={"Authorization": auth_header, "Content-Type": "application/zip"})
        response = conn.getresponse()
        answer = response.read()
    except (OSError, http.client.HTTPException) as error:
        conn.close()  # the next request opens a new connection
        return f"POST /instances (ZIP): {type(error).__name__}: {error}"
    try:
        stored = [a for a in json.loads(answer) if a.get("Status") in ("Success", "AlreadyStored")]
    except (ValueError, TypeError, AttributeError):
        stored = []
    if response.status != 200 or len(stored) != members:
        return (f"POST /instances (ZIP of {members}): HTTP {response.status}, {len(stored)} stored: "
                f"{' '.join(answer[:300].decode(errors='replace').split())}")
    return None


def request(target, method, path, timeout=REQUEST_TIMEOUT):
    """(status, body) of one request on a new connection."""
    conn = target.connection()
    conn.timeout = timeout
    try:
        conn.request(method, path, headers={"Authorization": target.auth_header})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def count_instances(target):
    status, body = request(target, "GET", "/statistics")
    return json.loads(body)["CountInstances"] if status == 200 else -1


# --- the measurements -------------------------------------------------------------


@dataclass
class Results:
    fill_seconds: float = 0.0  # the big study and the studies to delete, through POST /instances
    downloads: list = field(default_factory=list)  # one dict per ZIP download
    deletes: dict = field(default_factory=dict)  # size -> [(DELETE s, files gone s, longest check s)]
    left: tuple = (-1, -1, -1, -1)  # instances and files at the end, and what they should be
    errors: list = field(default_factory=list)
    log: str = ""  # the server's log, kept when something failed


def measure_target(name, args, postgres_url, data):
    results = Results()
    print(f"\n{name}: starting; load average {load_average()}", flush=True)
    with start(name, args, postgres_url) as target:
        trace = ""
        try:
            measure(target, args, data, results)
        except Exception as error:  # noqa: BLE001 (the tables still show what was measured)
            results.errors.append(f"{type(error).__name__}: {error}")
            trace = f"\n--- the benchmark's traceback:\n{traceback.format_exc()}"
        if results.errors:
            results.log = target.logs() + trace
    return results


def measure(target, args, data, results):
    name = target.name
    started = time.perf_counter()
    # The study to archive: one instance per request, CONCURRENCY clients.
    results.errors += send_all(target, data.big.files, ingest.post)
    # The others, one after the other, so that the files each adds can be counted.
    study_files = {data.big.public_id: target.files()}  # public id -> the paths of its files
    for study in data.warmup + data.delete_studies:
        before = target.files()
        results.errors += send_all(target, data.bodies[study.public_id], post_zip)
        study_files[study.public_id] = target.files() - before
    results.fill_seconds = time.perf_counter() - started
    stored = count_instances(target)
    expected = len(data.big.files) + len(data.warmup) + sum(len(s.files) for s in data.delete_studies)
    print(f"{name}: stored {stored}/{expected} instances in {results.fill_seconds:.0f} s", flush=True)
    if stored != expected:
        results.errors.append(f"{stored} instances stored instead of {expected}")
    if results.errors:
        return

    warm_up_archives(target, data, results)
    for repetition in range(1, args.repetitions + 1):
        if download := fetch_zip(target, data.big, check_crc=repetition == 1, errors=results.errors):
            results.downloads.append(download)
            print(f"{name}: ZIP {repetition}: {download['bytes'] / 1e6:.1f} MB in {download['seconds']:.2f} s, "
                  f"RSS {download['rss_before'] / 1e6:.0f} -> {download['rss_peak'] / 1e6:.0f} MB", flush=True)

    kept = warm_up_deletes(target, data, study_files, results)
    for study in data.delete_studies:
        if (measured := delete_study(target, study, study_files[study.public_id], results.errors)) is None:
            break
        results.deletes.setdefault(len(study.files), []).append(measured)
        print(f"{name}: DELETE of {len(study.files)} instances: {measured[0] * 1000:.0f} ms, "
              f"files gone after {measured[1] * 1000:.0f} ms", flush=True)

    left = target.files()
    expected_files = set().union(*(study_files[s.public_id] for s in kept))
    results.left = (count_instances(target), len(left), sum(len(s.files) for s in kept), len(expected_files))
    if left != expected_files:
        results.errors.append(f"at the end {len(left - expected_files)} files in the storage that belong to no "
                              f"study left, {len(expected_files - left)} files of a study left missing")


def parallel_requests(target, method, paths, results):
    """One request per path, all at once over new connections (so that each gunicorn
    worker likely gets some); a failure is an error."""
    answers = []
    threads = [threading.Thread(target=lambda p=p: answers.append((p, request(target, method, p)))) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for path, (status, body) in answers:
        if status != 200:
            results.errors.append(f"warm-up {method} {path}: HTTP {status}: {body[:300].decode(errors='replace')}")


def warm_up_archives(target, data, results):
    """The first request a gunicorn worker serves on a route pays for imports: fetch
    the small studies' archives, twice, before the clock runs."""
    for _ in range(2):
        parallel_requests(target, "GET", [f"/studies/{study.public_id}/archive" for study in data.warmup], results)


def warm_up_deletes(target, data, study_files, results):
    """DELETE all the small studies but one at once, then wait for their files to go;
    the studies left."""
    deleted, kept = data.warmup[:-1], [data.big, data.warmup[-1]]
    paths = set().union(*(study_files[s.public_id] for s in deleted))
    parallel_requests(target, "DELETE", [f"/studies/{study.public_id}" for study in deleted], results)
    deadline = time.perf_counter() + REMOVAL_TIMEOUT
    while any(map(os.path.exists, paths)) and time.perf_counter() < deadline:
        time.sleep(POLL_INTERVAL)
    return kept


def fetch_zip(target, study, check_crc, errors):
    """Read the whole ZIP of the study while sampling the server's RSS; check its members."""
    path = f"/studies/{study.public_id}/archive"
    conn = target.connection()
    out = io.BytesIO()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    try:
        with RssSampler(target.pid) as rss:
            started = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": target.auth_header})
            response = conn.getresponse()
            first_byte = time.perf_counter() - started
            if response.status != 200:
                errors.append(f"GET {path}: HTTP {response.status}: {response.read()[:300].decode(errors='replace')}")
                return None
            while count := response.readinto(buffer):
                out.write(view[:count])
            elapsed = time.perf_counter() - started
    except (OSError, http.client.HTTPException) as error:
        errors.append(f"GET {path}: {type(error).__name__}: {error}")
        return None
    finally:
        conn.close()
    size = out.tell()
    try:
        with zipfile.ZipFile(out) as archive:
            members = [m for m in archive.infolist() if m.filename.lower().endswith(".dcm")]
            unpacked = sum(m.file_size for m in members)
            methods = sorted({zipfile.compressor_names.get(m.compress_type, str(m.compress_type)) for m in members})
            if check_crc and (bad := archive.testzip()) is not None:
                errors.append(f"GET {path}: member {bad} fails its CRC check")
    except zipfile.BadZipFile as error:
        errors.append(f"GET {path}: the answer ({size} bytes) is no ZIP: {error}")
        return None
    if len(members) != len(study.files) or unpacked != study.size:
        errors.append(f"GET {path}: {len(members)} .dcm members of {unpacked} bytes in all, instead of "
                      f"{len(study.files)} of {study.size}")
    return {"bytes": size, "members": len(members), "unpacked": unpacked, "methods": methods,
            "seconds": elapsed, "first_byte": first_byte, "rss_before": rss.before, "rss_peak": rss.peak}


def delete_study(target, study, paths, errors):
    """(DELETE seconds, seconds until the study's files (`paths`) were gone, seconds
    a check of the files took) of one study; None on failure.

    Every POLL_INTERVAL after the answer, the files still there are looked for
    (os.stat); they are gone at the end of the check that finds none, or at the
    answer when the first check, made as it came, finds none."""
    if missing := [p for p in paths if not os.path.exists(p)]:
        errors.append(f"DELETE /studies/{study.public_id}: {len(missing)} of its {len(paths)} files gone before")
        return None
    started = time.perf_counter()
    status, body = request(target, "DELETE", f"/studies/{study.public_id}")
    answered = time.perf_counter() - started
    if status != 200:
        errors.append(f"DELETE /studies/{study.public_id} ({len(study.files)} instances): HTTP {status}: "
                      f"{body[:300].decode(errors='replace')}")
        return None
    remaining, checks = list(paths), []
    while True:
        checked = time.perf_counter()
        remaining = [p for p in remaining if os.path.exists(p)]
        now = time.perf_counter()
        checks.append(now - checked)
        if not remaining:
            break
        if now - started > REMOVAL_TIMEOUT:
            errors.append(f"DELETE /studies/{study.public_id}: {len(remaining)} of its {len(paths)} files still "
                          f"in the storage after {REMOVAL_TIMEOUT} s")
            return None
        time.sleep(POLL_INTERVAL)
    gone = answered if len(checks) == 1 else now - started
    status, body = request(target, "GET", f"/studies/{study.public_id}")
    if status != 404:
        errors.append(f"GET /studies/{study.public_id} after its DELETE: HTTP {status} instead of 404")
    return answered, gone, max(checks)


# --- the report -------------------------------------------------------------------


def report(args, data, results):
    """Print the tables and every problem; True when something failed."""
    names = list(results)
    print("\nfill through POST /instances (not a figure: context only)")
    for name in names:
        print(f"  {name:<17} {results[name].fill_seconds:6.0f} s")

    print(f"\nZIP GET /studies/{{id}}/archive, one study of {args.big_study} instances of {LARGE}x{LARGE} "
          f"({data.big_mb():.1f} MB of files), read whole; ratio = ZIP / files; RSS of the server")
    row = "{:<17} {:>3} {:>7} {:>8} {:>6} {:>8} {:>7} {:>8} {:>9} {:>10} {:>9} {:>7}"
    print(row.format("target", "rep", "members", "ZIP MB", "ratio", "1st b ms", "total s", "ZIP MB/s",
                     "files MB/s", "RSS before", "RSS peak", "growth"))
    for name in names:
        for number, d in enumerate(results[name].downloads, 1):
            print(row.format(name, number, d["members"], f"{d['bytes'] / 1e6:.1f}",
                             f"{d['bytes'] / d['unpacked']:.3f}" if d["unpacked"] else "-",
                             f"{d['first_byte'] * 1000:.0f}", f"{d['seconds']:.2f}",
                             f"{d['bytes'] / 1e6 / d['seconds']:.1f}", f"{d['unpacked'] / 1e6 / d['seconds']:.1f}",
                             f"{d['rss_before'] / 1e6:.0f} MB", f"{d['rss_peak'] / 1e6:.0f} MB",
                             f"{(d['rss_peak'] - d['rss_before']) / 1e6:+.0f} MB"))
    methods = sorted({f"{name}: {', '.join(d['methods'])}" for name in names for d in results[name].downloads})
    if methods:
        print("ZIP members' compression: " + "; ".join(methods))
    row = "{:<17} {:>12} {:>12} {:>12} {:>16}"
    print("\nmedian of the repetitions")
    print(row.format("target", "1st b ms", "total s", "ZIP MB/s", "max RSS growth"))
    for name in names:
        downloads = results[name].downloads
        if downloads:
            print(row.format(name, f"{statistics.median(d['first_byte'] for d in downloads) * 1000:.0f}",
                             f"{statistics.median(d['seconds'] for d in downloads):.2f}",
                             f"{statistics.median(d['bytes'] / 1e6 / d['seconds'] for d in downloads):.1f}",
                             f"{max(d['rss_peak'] - d['rss_before'] for d in downloads) / 1e6:+.0f} MB"))

    print(f"\nDELETE /studies/{{id}}, studies of {SMALL}x{SMALL} instances "
          f"({len(data.delete_studies[0].files[0]) / 1000:.0f} kB each), one at a time; files gone = from the start "
          f"of the DELETE until a check of the study's files finds none (the answer's time when the first check, "
          f"made as it came, finds none); after answer = files gone - DELETE")
    row = "{:<17} {:>9} {:>7} {:>10}  {:<22} {:>13}  {:<22} {:>12}"
    print(row.format("target", "instances", "studies", "DELETE ms", "each", "files gone ms", "each",
                     "after answer"))
    for name in names:
        for size, measured in results[name].deletes.items():
            deletes = [m[0] * 1000 for m in measured]
            gone = [m[1] * 1000 for m in measured]
            print(row.format(name, size, len(measured), f"{statistics.median(deletes):.0f}",
                             " / ".join(f"{x:.0f}" for x in deletes), f"{statistics.median(gone):.0f}",
                             " / ".join(f"{x:.0f}" for x in gone),
                             f"{statistics.median(g - d for g, d in zip(gone, deletes)):.0f}"))
    print(f"(ms; the median of the studies, then each study's; the files still there checked every "
          f"{POLL_INTERVAL * 1000:.0f} ms, a check taking at most "
          + ", ".join(f"{max(m[2] for ms in results[name].deletes.values() for m in ms) * 1000:.1f} ms for {name}"
                      for name in names if results[name].deletes) + ")")

    problems = []
    for name in names:
        r = results[name]
        instances, files, expected_instances, expected_files = r.left
        if not r.errors and (instances, files) != (expected_instances, expected_files):
            problems.append(f"{name}: at the end {instances} instances and {files} files in the storage, "
                            f"instead of {expected_instances} and {expected_files}")
        for message in sorted(set(r.errors))[:10]:
            problems.append(f"{name}: {r.errors.count(message)} x {message}")
    for problem in problems:
        print("PROBLEM: " + problem)
    for name in names:
        if results[name].log:
            print(f"\n--- last lines of the {name} log:")
            for line in results[name].log.splitlines()[-30:]:
                print("    " + line)
    if not problems:
        print("\nchecks: every request succeeded, every ZIP held one .dcm member per instance with the stored "
              "bytes (the first ZIP of each target CRC-checked), every deleted study's files left the storage, "
              "and the instances and files left at the end are exactly those not deleted")
    return bool(problems)


if __name__ == "__main__":
    sys.exit(main())
