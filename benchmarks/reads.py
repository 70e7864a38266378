"""Read benchmark: latency, server CPU per request and requests/s of the common reads, pacsweb and Orthanc side by side.

    .venv/bin/python -m benchmarks.reads                      # 2,000 studies, pacsweb-postgres and orthanc-sqlite
    .venv/bin/python -m benchmarks.reads --studies 500 --requests 200
    .venv/bin/python -m benchmarks.reads --targets pacsweb-sqlite pacsweb-postgres orthanc-sqlite orthanc-postgres

The reads (issue 16's targets):
- GET /studies/{id} (Orthanc REST),
- GET /instances/{id}/file (the stored DICOM file, an 8x8 CT of a few kB),
- QIDO-RS GET /dicom-web/studies?PatientID=... (one answer, a different patient each time),
- QIDO-RS GET /dicom-web/studies?PatientName=<a six-letter prefix>* (a block of 20 answers, a different block each time).

Every target is started fresh and filled through POST /instances with --studies
small studies (benchmarks.rest's data: one instance each, every one its own
patient, name and date). pacsweb is then measured with 1, 2 and 4 gunicorn
worker processes (--threads threads each; the server is restarted on the same
data between them), Orthanc once with its default HTTP threads. For each read:

1. latency: --requests requests one after the other on one keep-alive
   connection (p50, p95 seen by the client) and the server's CPU over them,
   divided by the count: CPU ms per request, the user + system time of the
   server's process tree read from /proc/<pid>/stat before and after (for
   pacsweb that includes gunicorn's master). On PostgreSQL the database's own
   CPU per request (its postmaster's process tree, when the server runs on this
   machine) is a column of its own ("DB ms"): SQLite runs inside the server's
   process, so there it is in "CPU ms".
2. throughput: 2 x --requests requests by --clients keep-alive connections in
   parallel: requests/s, and CPU ms per request again.

The measured requests are repeats: after the fill, every one of them is sent once,
unmeasured (its CPU per request is printed), as a viewer opens a study before reading
its parts. A first read of a study by a user writes its audit row; pacsweb records a
read once per study, user and PACS_AUDIT_READ_WINDOW (archive/audit.py), and the
repeats measured here are within that window.

Each phase is preceded by unmeasured requests on new connections from more
clients than pacsweb has workers, so that every worker has served each route
(the first request a worker serves pays for imports). Every answer is checked
(the study's ID, the file's bytes, the StudyInstanceUIDs a search must find).

Last, unless --no-floor, the floor: benchmarks/floor.py (one fixed JSON answer, no
Django, no database, no credential check) served by gunicorn as pacsweb runs it (its
worker class, configuration and access log; 1 process), measured as the reads: what
any answer of this web stack costs at least on this machine.

Client and servers share this machine: requests/s is bounded by its cores (the
client threads use CPU too), and wall-clock figures move with whatever else it
runs; the CPU per request is the figure to compare. Exits 1 when an answer was
wrong or a request failed.
"""

import argparse
import contextlib
import datetime
import json
import os
import random
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import psycopg

from archive.identifiers import instance_public_id
from benchmarks import floor, ingest, rest
from tests.dicomgen import uid

TARGETS = tuple(ingest.TARGETS)
WORKER_COUNTS = (1, 2, 4)
WARMUP_CLIENTS = 8  # more than pacsweb's largest worker count
WARMUP_REQUESTS = 32  # per read, each on a new connection
SEED = 20261206


def main():
    args = parse_args()
    print_header(args)
    data = Data(args.studies)
    with ingest.postgres_server(args.targets) as postgres_url:
        if postgres_url:
            with psycopg.connect(postgres_url) as conn:
                print(f"PostgreSQL: {conn.info.parameter_status('server_version')} "
                      f"at {conn.info.host} port {conn.info.port}")
        print(f"data: {args.studies} studies of 1 instance ({data.megabytes():.1f} MB)", flush=True)
        rows = []
        for name in args.targets:
            rows += measure_target(name, args, postgres_url, data)
        if not args.no_floor:
            rows += measure_floor(args)
    failed = report(args, rows)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if failed:
        print("FAILED: some requests failed or some answers were wrong (see above)")
    return 1 if failed else 0


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reads", description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=2000, help="small studies in the index (default 2000)")
    parser.add_argument("--requests", type=int, default=300,
                        help="requests per read in the latency phase; twice as many in the throughput phase "
                             "(default 300)")
    parser.add_argument("--clients", type=int, default=8, help="parallel connections of the throughput phase "
                                                                "(default 8)")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=["pacsweb-postgres", "orthanc-sqlite"])
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKER_COUNTS),
                        help="pacsweb gunicorn process counts to measure (default 1 2 4)")
    parser.add_argument("--threads", type=int, default=4, help="pacsweb threads per process (default 4)")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the Python floor (benchmarks/floor.py: gunicorn as pacsweb runs it, one fixed answer)")
    args = parser.parse_args()
    if not 40 <= args.studies < len(rest.SYLLABLES) ** 4:
        parser.error(f"--studies must be from 40 to {len(rest.SYLLABLES) ** 4 - 1}")
    return args


def print_header(args):
    command = shlex.join([os.path.relpath(sys.executable), "-m", "benchmarks.reads", *sys.argv[1:]])
    print(f"command: {command}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {ingest.cpu_model()}, "
          f"{ingest.memory_gb():.1f} GB RAM, load average at the start: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"software: Python {sys.version.split()[0]}, pacsweb {ingest.git_revision()}, "
          f"Orthanc {rest.orthanc.version()}")
    inherited = ", ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("PACS_"))
    print(f"pacsweb: gunicorn gthread, {'/'.join(map(str, args.workers))} workers x {args.threads} threads, "
          + (f"settings from the environment: {inherited}" if inherited else "other settings at their defaults"))
    print("Orthanc: Debian package defaults (HTTP threads 50), DICOMweb plugin at /dicom-web/")
    print(f"method: latency = {args.requests} requests one at a time on one keep-alive connection, request to last "
          f"byte; req/s = {2 * args.requests} requests over {args.clients} keep-alive connections; CPU = user + "
          f"system time of the server's process tree (/proc/<pid>/stat) over the phase / requests")
    print("NOTE: client and servers share this machine, which may be running other work: compare CPU ms.")


# --- the data and the reads -------------------------------------------------------


@dataclass(frozen=True)
class Request:
    path: str
    accept: str
    check: object  # (body) -> None when the answer is right, else what is wrong


@dataclass(frozen=True)
class Read:
    label: str
    requests: tuple  # cycled through, in this order


class Data:
    """The instances every target gets, and the requests of each read with their expected answers."""

    def __init__(self, count):
        days = random.Random(rest.SEED).sample(range(count), count)
        self.studies = [rest.small_study(i, rest.FIRST_DATE + datetime.timedelta(days=days[i]))
                        for i in range(count)]
        self.files = [rest.small_instance(s) for s in self.studies]
        order = random.Random(SEED).sample(range(count), count)
        self.reads = [
            Read("GET /studies/{id}", tuple(self._study(i) for i in order)),
            Read("GET /instances/{id}/file", tuple(self._file(i) for i in order)),
            Read("QIDO PatientID (1 answer)", tuple(self._by_patient_id(i) for i in order)),
            Read("QIDO PatientName* (20 answers)", tuple(self._by_name_prefix(i) for i in order)),
        ]

    def megabytes(self):
        return sum(map(len, self.files)) / 1e6

    def _study(self, i):
        study = self.studies[i]

        def check(body):
            answer = json.loads(body)
            if answer.get("ID") != study.public_id or answer.get("MainDicomTags", {}).get("StudyInstanceUID") \
                    != study.study_uid:
                return f"GET /studies/{study.public_id}: another study: {body[:200]!r}"
            return None

        return Request(f"/studies/{study.public_id}", "application/json", check)

    def _file(self, i):
        study, file = self.studies[i], self.files[i]
        series_uid = uid(study.study_uid, 1)
        public_id = instance_public_id(study.patient_id, study.study_uid, series_uid, uid(series_uid, 1))

        def check(body):
            return None if body == file else f"GET /instances/{public_id}/file: {len(body)} bytes, not the file sent"

        return Request(f"/instances/{public_id}/file", "*/*", check)

    def _by_patient_id(self, i):
        study = self.studies[i]
        return self._search({"PatientID": study.patient_id}, {study.study_uid})

    def _by_name_prefix(self, i):
        prefix = self.studies[i].patient_name[:6]
        return self._search({"PatientName": prefix + "*"},
                            {s.study_uid for s in self.studies if s.patient_name.startswith(prefix)})

    @staticmethod
    def _search(parameters, expected):
        search = rest.Search("", {**parameters, "limit": str(rest.QUERY_LIMIT)}, frozenset(expected))

        def check(body):
            found = {study[rest.STUDY_UID]["Value"][0] for study in (json.loads(body) if body else [])}
            return None if found == search.expected else \
                f"QIDO {search.parameters}: {len(found)} studies, expected {len(search.expected)}"

        return Request("/dicom-web/studies?" + rest.query_string(search), "application/dicom+json", check)


# --- the measurements -------------------------------------------------------------


@dataclass
class Row:
    target: str
    workers: str
    read: str
    latencies: list = field(default_factory=list)
    latency_cpu: float = 0.0  # server CPU seconds over the latency phase
    latency_db_cpu: float | None = None  # PostgreSQL's CPU seconds over it (None: the database is in-process)
    latency_requests: int = 0
    throughput_seconds: float = 0.0
    throughput_cpu: float = 0.0
    throughput_requests: int = 0
    errors: list = field(default_factory=list)


def measure_target(name, args, postgres_url, data):
    print(f"\n{name}: starting", flush=True)
    rows = []
    with (rest.start(name, args, postgres_url) if name.startswith("orthanc")
          else start_pacsweb(name, args, postgres_url)) as target:
        started = time.perf_counter()
        _, errors = rest.send_all(target, data.files, ingest.post, progress=f"{name}: filled")
        fill = time.perf_counter() - started
        print(f"{name}: filled {len(data.files)} instances in {fill:.0f} s", flush=True)
        if errors:
            return [Row(name, "-", "fill", errors=["fill: " + e for e in errors])]
        target.db_pid = postgres_pid(postgres_url) if name.endswith("postgres") else None
        for read in data.reads:
            first = list(islice_cycle(read.requests, 2 * args.requests))
            before = ingest.cpu_seconds(target.pid)
            errors = run_requests(target, first, args.clients)[1]
            print(f"{name}: first reads, {read.label}: CPU {cpu_ms(ingest.cpu_seconds(target.pid) - before, len(first))}"
                  f" ms/req (unmeasured)", flush=True)
            if errors:
                return [Row(name, "-", read.label, errors=["first reads: " + e for e in errors])]
        if name.startswith("orthanc"):
            rows += measure_reads(name, "50 thr", target, args, data)
        else:
            server = target.server
            for workers in args.workers:
                restart(server, workers)
                target.pid = server.process.pid
                rows += measure_reads(name, f"{workers}x{args.threads}", target, args, data)
    return rows


@contextlib.contextmanager
def start_pacsweb(name, args, postgres_url):
    """benchmarks.rest.start for pacsweb on either database, the Server kept as `target.server` (to restart it)."""
    _, database = ingest.TARGETS[name]
    directory = rest.scratch_dir("bench-pacsweb-")
    server = None
    try:
        server = rest.servers.Server(directory, database=database, workers=args.workers[0], threads=args.threads)
        target = rest.Target(server.url, rest.servers.auth_header(), server.output, server.process.pid)
        target.server = server
        yield target
    finally:
        if server is not None:
            server.stop()
            if server.database_url:
                database_name = urlparse(server.database_url).path.lstrip("/")
                with psycopg.connect(postgres_url, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {database_name} WITH (FORCE)")
        rest.remove(directory)


def measure_floor(args):
    """The floor row: benchmarks/floor.py served by gunicorn as pacsweb's web server is
    (worker class, configuration, access log), 1 process, measured as the reads are."""
    print("\npython floor: starting", flush=True)
    with floor.served("benchmarks.floor:application", args.threads) as target:
        target.db_pid = None
        check = lambda body: None if body == floor.BODY else f"/floor: {body[:100]!r}"  # noqa: E731
        read = Read("one fixed answer, no Django", (Request("/floor", "application/json", check),))
        return measure_reads("python floor", "1x" + str(args.threads), target, args, SimpleNamespace(reads=[read]))


def restart(server, workers):
    """Start the pacsweb server again, on the same data, with `workers` gunicorn processes."""
    server.stop()
    server.command[server.command.index("--workers") + 1] = str(workers)
    server.start()


def measure_reads(name, workers, target, args, data):
    rows = []
    for read in data.reads:
        row = Row(name, workers, read.label)
        row.errors += run_requests(target, read.requests[:WARMUP_REQUESTS], WARMUP_CLIENTS, keep_alive=False)[1]

        cycle = list(islice_cycle(read.requests, args.requests))
        before, db_before = ingest.cpu_seconds(target.pid), database_cpu(target)
        row.latencies, errors = run_requests(target, cycle, 1)
        row.latency_cpu = ingest.cpu_seconds(target.pid) - before
        if db_before is not None:
            row.latency_db_cpu = database_cpu(target) - db_before
        row.latency_requests = len(cycle)
        row.errors += errors

        cycle = list(islice_cycle(read.requests, 2 * args.requests))
        before = ingest.cpu_seconds(target.pid)
        started = time.perf_counter()
        _, errors = run_requests(target, cycle, args.clients)
        row.throughput_seconds = time.perf_counter() - started
        row.throughput_cpu = ingest.cpu_seconds(target.pid) - before
        row.throughput_requests = len(cycle)
        row.errors += errors
        print(f"{name} {workers}: {read.label}: p50 {percentile_ms(row.latencies, 50)} ms, "
              f"CPU {cpu_ms(row.latency_cpu, row.latency_requests)} ms/req, "
              f"{row.throughput_requests / row.throughput_seconds:.0f} req/s", flush=True)
        rows.append(row)
    return rows


def postgres_pid(url):
    """The postmaster's pid of the PostgreSQL server at url when it runs on this machine, else None."""
    try:
        with psycopg.connect(url) as conn:
            directory = conn.execute("SHOW data_directory").fetchone()[0]
        return int((Path(directory) / "postmaster.pid").read_text().split()[0])
    except (psycopg.Error, OSError, ValueError, IndexError):
        return None


def database_cpu(target):
    """CPU seconds of the PostgreSQL server's processes (every backend is the postmaster's child), or None."""
    return ingest.cpu_seconds(target.db_pid) if target.db_pid else None


def islice_cycle(items, count):
    return (items[i % len(items)] for i in range(count))


def run_requests(target, requests, clients, keep_alive=True):
    """Send `requests` (in order, taken from a shared list) over `clients` parallel
    connections; (latencies, errors). Without `keep_alive` every request opens a new connection."""
    pending = list(reversed(requests))
    latencies, errors = [], []  # list.append and list.pop are atomic: the threads share them

    def client():
        conn = target.connection()
        try:
            while True:
                try:
                    request = pending.pop()
                except IndexError:
                    return
                started = time.perf_counter()
                try:
                    status, body = rest.get(conn, target, request.path, request.accept)
                except (OSError, rest.http.client.HTTPException) as error:
                    conn.close()
                    errors.append(f"{request.path}: {type(error).__name__}: {error}")
                    continue
                latencies.append(time.perf_counter() - started)
                error = f"{request.path}: HTTP {status}: {body[:200]!r}" if status != 200 else request.check(body)
                if error:
                    errors.append(error)
                if not keep_alive:
                    conn.close()
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


# --- the report -------------------------------------------------------------------


def report(args, rows):
    """Print the table and every problem; True when something failed."""
    print(f"\nreads, {args.studies} studies in the index; latency over {args.requests} sequential requests, "
          f"req/s over {2 * args.requests} requests by {args.clients} clients")
    line = "{:<31} {:<17} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9}"
    print(line.format("read", "target", "workers", "p50 ms", "p95 ms", "CPU ms", "DB ms", "req/s", "CPU ms"))
    print(line.format("", "", "", "", "", "(seq)", "(seq)", "", "(par)"))
    problems = []
    for read in dict.fromkeys(row.read for row in rows):
        for row in rows:
            if row.read != read:
                continue
            if row.latency_requests:
                print(line.format(row.read, row.target, row.workers, percentile_ms(row.latencies, 50),
                                  percentile_ms(row.latencies, 95), cpu_ms(row.latency_cpu, row.latency_requests),
                                  "-" if row.latency_db_cpu is None else cpu_ms(row.latency_db_cpu,
                                                                                row.latency_requests),
                                  f"{row.throughput_requests / row.throughput_seconds:.0f}",
                                  cpu_ms(row.throughput_cpu, row.throughput_requests)))
            for message in sorted(set(row.errors))[:5]:
                problems.append(f"{row.target} {row.workers} {row.read}: {row.errors.count(message)} x {message}")
    for problem in problems:
        print("PROBLEM: " + problem)
    if not problems:
        print("\nchecks: every request succeeded and every answer was the expected one")
    return bool(problems)


def percentile_ms(latencies, p):
    return f"{ingest.percentile(sorted(latencies), p) * 1000:.2f}"


def cpu_ms(seconds, requests):
    return f"{seconds / requests * 1000:.2f}" if requests else "-"


if __name__ == "__main__":
    sys.exit(main())
