"""Ingest benchmark: POST /instances throughput of pacsweb and of Orthanc, side by side.

    .venv/bin/python -m benchmarks.ingest                 # -n 200, every target, concurrency 1 and 4
    .venv/bin/python -m benchmarks.ingest -n 20 --targets pacsweb-sqlite orthanc-sqlite

For every target (pacsweb or Orthanc, each on SQLite and on PostgreSQL), size
class (512x512 CT ≈ 0.5 MB, 64x64 CT ≈ 9 kB) and concurrency, a fresh empty
server is started, warmed up, sent the same N distinct instances by C client
threads over keep-alive connections, checked with GET /statistics, and stopped.
One line of the table per measurement. The PostgreSQL server is the one in
DATABASE_URL, or a throwaway embedded one when that is unset; every server gets
its own database on it.

Everything runs on this machine: the client threads share the CPUs with the
server under test (and with PostgreSQL), so figures compare targets with each
other, not with a deployment. Exits 1 when any request failed or any count is wrong.
"""

import argparse
import contextlib
import http.client
import json
import os
import platform
import queue
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import psycopg

from tests import orthanc, servers
from tests.dicomgen import make_instance, uid
from tests.services import EmbeddedPostgres, remove, scratch_dir

TARGETS = {
    # name: (product, database)
    "pacsweb-sqlite": ("pacsweb", "sqlite"),
    "pacsweb-postgres": ("pacsweb", "postgres"),
    "orthanc-sqlite": ("orthanc", "sqlite"),
    "orthanc-postgres": ("orthanc", "postgres"),
}
SIZES = {"large": 512, "small": 64}  # rows = columns of the 16-bit CT
STUDIES = 4
WARMUP_CONNECTIONS = 8
REQUEST_TIMEOUT = 300


def main():
    args = parse_args()
    print_header(args)
    with postgres_server(args.targets) as postgres_url:
        if postgres_url:
            with psycopg.connect(postgres_url) as conn:
                print(f"PostgreSQL: {conn.info.parameter_status('server_version')} "
                      f"at {conn.info.host} port {conn.info.port}")
        print()
        failed = run(args, postgres_url)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if failed:
        print("FAILED: some requests failed or some counts are wrong (see above)")
    return 1 if failed else 0


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200, help="instances stored per measurement (default 200)")
    parser.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--warmup", type=int, default=24,
                        help=f"instances stored over {WARMUP_CONNECTIONS} connections before the clock starts "
                             "(default 24)")
    parser.add_argument("--workers", type=int, default=4, help="pacsweb gunicorn processes (default 4)")
    parser.add_argument("--threads", type=int, default=4, help="pacsweb threads per process (default 4)")
    return parser.parse_args()


def print_header(args):
    command = shlex.join([os.path.relpath(sys.executable), "-m", "benchmarks.ingest", *sys.argv[1:]])
    print(f"command: {command}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
          f"{memory_gb():.1f} GB RAM, load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"software: Python {platform.python_version()}, pacsweb {git_revision()}, Orthanc {orthanc.version()}")
    # The servers inherit this environment: a PACS_* variable set here changes them.
    inherited = ", ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("PACS_"))
    print(f"pacsweb: gunicorn gthread, {args.workers} workers x {args.threads} threads, "
          + (f"settings from the environment: {inherited}" if inherited else
             "other settings at their defaults (fsync on, PostgreSQL pool of 4 per process)"))
    print("Orthanc: Debian package defaults (fsync on, HTTP threads 50, "
          "PostgreSQL index plugin with 1 connection), TCP_NODELAY=1")
    print(f"each measurement: fresh server, {args.warmup} warm-up instances over {WARMUP_CONNECTIONS} connections, "
          f"then -n {args.n} "
          f"instances over {STUDIES} studies; MB = 10^6 bytes; latency = one POST, seen by the client; "
          "CPU ms = the server's processes' user + system CPU per stored instance (/proc, the database server "
          "excluded: Orthanc on SQLite and pacsweb on SQLite include their index)")
    print("NOTE: preliminary figures - client and servers share this machine, which may be running other work.")


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def memory_gb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def git_revision():
    def git(*args):
        return subprocess.run(["git", *args], cwd=servers.REPO, capture_output=True, text=True, check=False).stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    return revision + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


@contextlib.contextmanager
def postgres_server(targets):
    """The admin URL of the PostgreSQL server the postgres targets use (None when none does)."""
    if not any(TARGETS[t][1] == "postgres" for t in targets):
        yield None
    elif os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
    else:
        directory = scratch_dir("bench-postgres-")
        server = EmbeddedPostgres(directory)
        # tests.servers creates pacsweb's databases on the server in DATABASE_URL.
        os.environ["DATABASE_URL"] = server.url
        try:
            yield server.url
        finally:
            del os.environ["DATABASE_URL"]
            server.stop()
            remove(directory)


# --- the instances ------------------------------------------------------------


def instances(size, count, purpose):
    """`count` distinct CT instances of one size class over STUDIES studies of two patients.

    `purpose` ("measure" or "warmup") is part of every UID, so warm-up instances
    never collide with measured ones.
    """
    side = SIZES[size]
    files = []
    for i in range(count):
        study = i % STUDIES
        study_uid = uid("bench-ingest", size, purpose, study)
        series_uid = uid(study_uid, "series")
        files.append(make_instance(
            patient_id=f"BENCH-{study % 2}", study_uid=study_uid, series_uid=series_uid,
            sop_uid=uid(series_uid, i), instance_number=i // STUDIES + 1, rows=side, columns=side,
        ))
    return files


# --- the servers ------------------------------------------------------------------


@dataclass
class Target:
    url: str
    auth_header: str
    log: Callable[[], str]  # the server's log so far, shown when a request fails
    pid: int  # the server's main process: its CPU, and its children's, is the server's


def process_tree(pid):
    """pid and every live descendant of it (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, ()))
    return tree


def cpu_seconds(pid):
    """User + system CPU seconds used so far by pid's live process tree.

    Read before and after a workload, the difference is what the server spent on it
    whatever else the machine runs (wall time is not: this machine is shared).
    Processes that exited in between are not counted, so the servers keep theirs.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


@contextlib.contextmanager
def start(name, args, postgres_url):
    product, database = TARGETS[name]
    if product == "orthanc":
        with orthanc.OrthancServer(database, postgres_url=postgres_url) as server:
            yield Target(server.url, server.auth_header, server.log, server.process.pid)
        return
    directory = scratch_dir("bench-pacsweb-")
    server = None
    try:
        server = servers.Server(directory, database=database, workers=args.workers, threads=args.threads)
        yield Target(server.url, servers.auth_header(), server.output, server.process.pid)
    finally:
        if server is not None:
            server.stop()
            if server.database_url:
                name = urlparse(server.database_url).path.lstrip("/")
                with psycopg.connect(postgres_url, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        remove(directory)


# --- one measurement --------------------------------------------------------------


@dataclass
class Result:
    elapsed: float  # seconds from the first measured request to the last answer
    latencies: list  # seconds, one per measured request
    errors: list  # one message per failed request, warm-up included
    stored: int  # CountInstances afterwards (-1 when /statistics failed)
    cpu: float  # server CPU seconds spent over the measured phase


def measure(target, files, warmup_files, concurrency):
    """Warm the server up with `warmup_files`, then time the storing of `files` by `concurrency` clients."""
    # A gunicorn worker process pays ~0.7 s on its first request (the password
    # hash, then the URLconf import). Whichever worker accepts first gets a new
    # connection, and keeps it: warm-up over a few keep-alive connections left a
    # worker cold in 4 runs of 8, a new connection per warm-up request, from
    # more parallel clients than pacsweb has workers, in none. The measured
    # phase opens connections of its own (a warm one left idle would be closed
    # by the server after 1-2 s).
    _, warmup_errors = store_all(target, warmup_files, WARMUP_CONNECTIONS, keep_alive=False)
    cpu_before = cpu_seconds(target.pid)
    started = time.perf_counter()
    latencies, errors = store_all(target, files, concurrency)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(target.pid) - cpu_before
    return Result(elapsed, latencies, ["warm-up: " + e for e in warmup_errors] + errors, count_instances(target),
                  cpu)


def store_all(target, files, connections, keep_alive=True):
    """Store `files` over `connections` parallel keep-alive connections (a thread each,
    taking the next file from a shared queue); return (latencies, error messages).
    Without `keep_alive`, every request goes over a new connection."""
    address = urlparse(target.url)
    work = queue.SimpleQueue()
    for body in files:
        work.put(body)
    latencies, errors = [], []  # list.append is atomic: the threads share them

    def client():
        conn = http.client.HTTPConnection(address.hostname, address.port, timeout=REQUEST_TIMEOUT)
        try:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter()
                error = post(conn, target.auth_header, body)
                latencies.append(time.perf_counter() - started)
                if error:
                    errors.append(error)
                if not keep_alive:
                    conn.close()  # http.client reconnects for the next request
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def post(conn, auth_header, body):
    """Store one instance; None on success, else what went wrong."""
    try:
        conn.request("POST", "/instances", body=body,
                     headers={"Authorization": auth_header, "Content-Type": "application/dicom"})
        response = conn.getresponse()
        answer = response.read()
    except (OSError, http.client.HTTPException) as error:
        conn.close()  # the next request opens a new connection
        return f"{type(error).__name__}: {error}"
    if response.status != 200:
        return f"HTTP {response.status}: {answer[:300].decode(errors='replace')}"
    try:
        status = json.loads(answer)["Status"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP 200 with an unexpected body: {answer[:300].decode(errors='replace')}"
    return None if status == "Success" else f"Status {status!r} instead of 'Success'"


def count_instances(target):
    address = urlparse(target.url)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", "/statistics", headers={"Authorization": target.auth_header})
        response = conn.getresponse()
        answer = response.read()
        return json.loads(answer)["CountInstances"] if response.status == 200 else -1
    finally:
        conn.close()


# --- the whole run ----------------------------------------------------------------

COLUMNS = ("target", "database", "size", "conc", "inst/s", "MB/s", "p50 ms", "p95 ms", "CPU ms", "errors", "stored")
ROW = "{:<8} {:<9} {:<14} {:>4} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6} {:>9}"


def run(args, postgres_url):
    files = {}
    for size in args.sizes:
        files[size] = instances(size, args.n, "measure")
        files[size + "-warmup"] = instances(size, args.warmup, "warmup")
    print(ROW.format(*COLUMNS))
    failed = False
    problems = []
    for name in args.targets:
        product, database = TARGETS[name]
        for size in args.sizes:
            megabytes = sum(len(body) for body in files[size]) / 1e6
            size_label = f"{size} {megabytes / args.n * 1000:.0f} kB"
            for concurrency in args.concurrency:
                with start(name, args, postgres_url) as target:
                    result = measure(target, files[size], files[size + "-warmup"], concurrency)
                    expected = args.warmup + args.n
                    if result.errors or result.stored != expected:
                        failed = True
                        problems.append((f"{name} {size} x{concurrency}", result, expected, target.log()))
                latencies = sorted(result.latencies)
                print(ROW.format(
                    product, database, size_label, concurrency,
                    f"{args.n / result.elapsed:.1f}", f"{megabytes / result.elapsed:.1f}",
                    f"{percentile(latencies, 50) * 1000:.0f}", f"{percentile(latencies, 95) * 1000:.0f}",
                    f"{result.cpu / args.n * 1000:.2f}", len(result.errors), f"{result.stored}/{expected}",
                ), flush=True)
    for label, result, expected, log in problems:
        print(f"\n--- {label}: {len(result.errors)} failed request(s), {result.stored} of {expected} instances stored")
        for message in sorted(set(result.errors))[:10]:
            print(f"  {result.errors.count(message)} x {message}")
        print("  last lines of the server log:")
        for line in log.splitlines()[-20:]:
            print("    " + line)
    return failed


def percentile(ordered, p):
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


if __name__ == "__main__":
    sys.exit(main())
