"""DICOM benchmark: C-STORE throughput and C-FIND latency of pacsweb's listener and of Orthanc.

    .venv/bin/python -m benchmarks.dicom                          # -n 200, --studies 10000, every target
    .venv/bin/python -m benchmarks.dicom --studies 300 -n 20      # a quick check

C-STORE: for every target, size class (512x512 CT ≈ 0.5 MB, 64x64 CT ≈ 9 kB) and
number of associations (1, 4), a fresh empty server is started, sent 2 warm-up
instances by one storescu, then the same N distinct files by as many DCMTK
storescu processes as associations (each its own share of the files, all started
together; the clock runs until the last one exits), checked with GET /statistics,
and stopped.

C-FIND: each target is filled with --studies studies of 10 instances (pacsweb's
index straight through SQL, see benchmarks/indexfill.py, after checking that the
rows equal those its ingest writes for the same files; Orthanc through POST
/instances), then asked 4 STUDY-level Study Root queries, each repeated, by DCMTK
findscu: a process and an association per query, as a workstation asks, timed
whole. (pynetdicom as the SCU, on one association, was tried: it spends about
1 ms of CPU per answer decoding, on the CPUs the servers need, which blurs the
queries with many answers.) The answers are checked against what the synthetic
data set says they must be.

The PostgreSQL server is the one in DATABASE_URL, or a throwaway embedded one
when that is unset; every server gets its own database on it. Clients and
servers share this machine, so figures compare targets with each other, not with
a deployment. Exits 1 when a store or a query failed or an answer is wrong.
"""

import argparse
import contextlib
import http.client
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from urllib.parse import urlparse

import psycopg
import pydicom

from archive.identifiers import patient_public_id
from benchmarks import indexfill, ingest
from benchmarks.ingest import cpu_model, cpu_seconds, git_revision, memory_gb, percentile
from tests import orthanc, servers
from tests.dicomgen import make_instance, uid
from tests.services import remove, scratch_dir

TARGETS = {
    # name: (product, index database)
    "pacsweb": ("pacsweb", "postgres"),
    # The embedded default: C-STORE only (the C-FIND index is filled through PostgreSQL's SQL).
    "pacsweb-sqlite": ("pacsweb", "sqlite"),
    "orthanc-sqlite": ("orthanc", "sqlite"),
    "orthanc-postgres": ("orthanc", "postgres"),
}
SIZES = {"large": 512, "small": 64}  # rows = columns of the 16-bit CT
# DCMTK's tools; the venv's pynetdicom ships scripts of the same names.
STORESCU = "/usr/bin/storescu"
FINDSCU = "/usr/bin/findscu"
ECHOSCU = "/usr/bin/echoscu"
# DCMTK leaves Nagle's algorithm on unless told otherwise (see README.md).
DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")
CALLING_AET = "BENCHSCU"
NODE_NAME = "bench-node"  # recorded in every instance row: the SQL fill writes it too
STORE_WARMUP = 2
STORE_TIMEOUT = 900
# Study 2 and 3 (one patient): stored through REST and compared with the SQL fill.
CHECK_STUDIES = (2, 3)
PROGRESS_SECONDS = 30  # between two progress lines (on stderr) of a REST fill
FIND_WARMUP = 2
FIND_TIMEOUT = 120
RETURN_KEYS = ("StudyInstanceUID", "PatientName", "StudyDate", "NumberOfStudyRelatedInstances")


@dataclass(frozen=True)
class FindQuery:
    label: str
    keys: dict  # matching keys, besides the empty return keys
    matches: Callable[[indexfill.Study], bool]  # which studies of the data set it must return


QUERIES = (
    FindQuery("PatientID exact", {"PatientID": indexfill.patient_id(42)},
              lambda s: s.patient_id == indexfill.patient_id(42)),
    FindQuery("PatientName SMI*", {"PatientName": "SMI*"}, lambda s: s.patient_name.startswith("SMI")),
    FindQuery("StudyDate 2020-03", {"StudyDate": "20200301-20200331"},
              lambda s: "20200301" <= s.study_date <= "20200331"),
    FindQuery("ModalitiesInStudy MR", {"ModalitiesInStudy": "MR"}, lambda s: "MR" in s.modalities),
)


def main():
    args = parse_args()
    high_load = print_header(args)
    failed = False
    # pacsweb always indexes in PostgreSQL here.
    with ingest.postgres_server(["pacsweb-postgres"]) as postgres_url:
        with psycopg.connect(postgres_url) as conn:
            print(f"PostgreSQL: {conn.info.parameter_status('server_version')} at {conn.info.host} port {conn.info.port}")
        if "store" in args.parts:
            failed |= run_store(args, postgres_url)
        if "find" in args.parts:
            failed |= run_find(args, postgres_url)
    print(f"\nload average at the end: {load_average()}")
    if high_load:
        print("NOTE: preliminary figures: the machine was busy with other work at the start (see the header).")
    if failed:
        print("FAILED: some stores or queries failed, or some counts or answers are wrong (see above)")
    return 1 if failed else 0


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dicom", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200, help="instances stored per C-STORE measurement (default 200)")
    parser.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--parts", nargs="+", choices=("store", "find"), default=["store", "find"])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--listeners", type=int, default=1,
                        help="pacsweb's listener processes on one port for C-STORE (default 1; "
                             "`make run` starts one per core)")
    parser.add_argument("--associations", nargs="+", type=int, default=[1, 4],
                        help="parallel storescu associations (default 1 4)")
    parser.add_argument("--studies", type=int, default=10000,
                        help=f"studies of {indexfill.INSTANCES_PER_STUDY} instances in the C-FIND index (default 10000)")
    parser.add_argument("--orthanc-studies", type=int,
                        help="fewer studies for the Orthanc targets, whose REST fill is slow (default: --studies)")
    parser.add_argument("--repetitions", type=int, default=50, help="timed repetitions of each query (default 50)")
    parser.add_argument("--fill-concurrency", type=int, default=4,
                        help="parallel POST /instances filling Orthanc (default 4)")
    args = parser.parse_args()
    args.orthanc_studies = args.orthanc_studies or args.studies
    return args


def print_header(args):
    """Print what was run where; True when the load average says the machine was busy."""
    command = shlex.join([os.path.relpath(sys.executable), "-m", "benchmarks.dicom", *sys.argv[1:]])
    cpus = len(os.sched_getaffinity(0))
    high_load = os.getloadavg()[0] > cpus / 2
    # "$dcmtk: storescu v3.6.7 2022-04-22 $"
    dcmtk = subprocess.run([STORESCU, "--version"], capture_output=True, text=True, check=True).stdout.split()[2]
    print(f"command: {command}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: {os.cpu_count()} CPUs (nproc {cpus}), {cpu_model()}, {memory_gb():.1f} GB RAM, "
          f"load average at the start: {load_average()}")
    print(f"software: Python {platform.python_version()}, pacsweb {git_revision()}, Orthanc {orthanc.version()}, "
          f"DCMTK {dcmtk}, pynetdicom {package_version('pynetdicom')}, pydicom {package_version('pydicom')}")
    # The servers inherit this environment: a PACS_* variable set here changes them.
    inherited = ", ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("PACS_"))
    print(f"pacsweb: its DICOM listener (manage.py dicom_listener, {args.listeners} process(es) on one port for C-STORE), "
          + (f"settings from the environment: {inherited}" if inherited else
             "default settings (fsync on, max PDU 256 kB, PostgreSQL pool of 4)")
          + f", PACS_NODE_NAME={NODE_NAME}; index in PostgreSQL; its web node (gunicorn, 1 worker x 4 threads) "
          "only answers the REST checks")
    print("Orthanc: Debian package defaults (fsync on, max PDU 16 kB; index in SQLite, or in PostgreSQL "
          "through the index plugin with 1 connection), TCP_NODELAY=1")
    print(f"calling AE {CALLING_AET}, declared at both (pacsweb: PACS_MODALITIES_FILE with AllowFind; "
          "Orthanc: DicomModalities); MB = 10^6 bytes; everything on loopback")
    if high_load:
        print(f"NOTE: preliminary figures: the load average at the start ({os.getloadavg()[0]:.2f}) is above half "
              f"the {cpus} CPUs: other work shares this machine and the figures move with it.")
    return high_load


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- the servers --------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    auth_header: str
    dicom_port: int
    aet: str
    log: Callable[[], str]  # the server's log so far, shown when something fails
    database_url: str | None  # the index database, when in PostgreSQL
    pids: tuple  # the processes that answer DICOM: their CPU (and their children's) is the server's


@contextlib.contextmanager
def start(name, postgres_url, listeners=1):
    """A fresh, empty target whose DICOM side knows CALLING_AET as a modality allowed to query;
    pacsweb's with `listeners` listener processes on one port, as `make run` starts one per core."""
    product, database = TARGETS[name]
    if product == "orthanc":
        config = {"DicomModalities": {"bench": [CALLING_AET, "127.0.0.1", 1]}}
        with orthanc.OrthancServer(database, postgres_url=postgres_url, config=config) as server:
            yield Target(name, server.url, server.auth_header, server.dicom_port, server.aet, server.log,
                         server.database_url, (server.process.pid,))
        return
    directory = scratch_dir("bench-pacsweb-")
    server = None
    started = []
    try:
        server = servers.Server(directory, database=database, workers=1, threads=4, PACS_NODE_NAME=NODE_NAME)
        modalities = directory / "modalities.json"
        modalities.write_text(json.dumps(
            {"bench": {"AET": CALLING_AET, "Host": "127.0.0.1", "Port": 1, "AllowFind": True}}))
        for _ in range(listeners):  # the kernel spreads associations over them (SO_REUSEPORT)
            started.append(servers.Listener(server, port=started[0].port if started else None,
                                            PACS_MODALITIES_FILE=modalities))
        listener = started[0]

        def log():
            return server.output() + "".join(f"\n--- listener ---\n{each.output()}" for each in started)

        yield Target(name, server.url, servers.auth_header(), listener.port, listener.ae_title, log,
                     server.database_url, tuple(each.process.pid for each in started))
    finally:
        for listener in started:
            listener.stop()
        if server is not None:
            server.stop()
        if server is not None and database == "postgres":
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {urlparse(server.database_url).path.lstrip('/')} WITH (FORCE)")
        remove(directory)


def target_cpu(target):
    """CPU seconds used so far by the processes that answer DICOM (and their children)."""
    return sum(map(cpu_seconds, target.pids))


def statistics(target):
    status, answer = servers.request_json(target.url + "/statistics", auth=target.auth_header)
    if status != 200:
        raise RuntimeError(f"GET /statistics of {target.name}: HTTP {status}: {answer}")
    return answer


def tail(log, lines=20):
    return "\n".join("    " + line for line in log.splitlines()[-lines:])


# --- C-STORE ----------------------------------------------------------------------


@dataclass
class StoreResult:
    elapsed: float = 0.0
    cpu: float = 0.0  # the answering process's CPU seconds over the measured stores
    errors: list = field(default_factory=list)
    stored: int = -1  # CountInstances after the run


def write_files(directory, size, count, purpose):
    """`count` distinct CT files of a size class in `directory`, over 4 studies of 2 patients."""
    directory.mkdir(parents=True)
    paths = []
    for i in range(count):
        study = i % 4
        study_uid = uid("bench-dicom-store", size, purpose, study)
        series_uid = uid(study_uid, "series")
        path = directory / f"{i:06d}.dcm"
        path.write_bytes(make_instance(
            patient_id=f"BENCH-STORE-{study % 2}", study_uid=study_uid, series_uid=series_uid,
            sop_uid=uid(series_uid, i), instance_number=i // 4 + 1, rows=SIZES[size], columns=SIZES[size]))
        paths.append(path)
    return paths


def storescu(target, paths, log_path):
    """A started storescu sending `paths` over one association: (process, path of its output)."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [STORESCU, "-aet", CALLING_AET, "-aec", target.aet, "127.0.0.1", str(target.dicom_port),
             *map(str, paths)],
            env=DCMTK_ENV, stdout=log, stderr=subprocess.STDOUT)
    return process, log_path


def measure_store(target, paths, warmup_paths, associations, work_dir):
    """Warm up over one association, then store `paths` over `associations` parallel ones."""
    result = StoreResult()
    finish([storescu(target, warmup_paths, work_dir / "warmup.log")], result, "warm-up")
    started = time.perf_counter()
    cpu_before = target_cpu(target)
    processes = [storescu(target, paths[index::associations], work_dir / f"storescu-{index}.log")
                 for index in range(associations)]
    finish(processes, result, "measured")
    result.elapsed = time.perf_counter() - started
    result.cpu = target_cpu(target) - cpu_before
    result.stored = statistics(target)["CountInstances"]
    return result


def finish(processes, result, phase):
    """Wait for storescu processes; note in `result` those that failed, with their output."""
    deadline = time.monotonic() + STORE_TIMEOUT
    for process, log_path in processes:
        try:
            code = process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
            result.errors.append(f"{phase} storescu killed after {STORE_TIMEOUT} s")
        if code != 0:
            result.errors.append(f"{phase} storescu exited with {code}:\n{tail(log_path.read_text(), 10)}")


STORE_COLUMNS = ("target", "index", "size", "assoc", "inst/s", "MB/s", "seconds", "CPU ms", "stored")
STORE_ROW = "{:<8} {:<9} {:<13} {:>5} {:>8} {:>7} {:>8} {:>7} {:>9}"


def run_store(args, postgres_url):
    work_dir = scratch_dir("bench-dicom-store-")
    try:
        files, warmups = {}, {}
        for size in args.sizes:
            files[size] = write_files(work_dir / size, size, args.n, "measure")
            warmups[size] = write_files(work_dir / f"{size}-warmup", size, STORE_WARMUP, "warmup")
        print(f"\nC-STORE with storescu: fresh empty target per line, {STORE_WARMUP} warm-up instances over 1 "
              f"association, then -n {args.n} instances over `assoc` parallel associations "
              f"(one storescu process each); CPU ms = user + system CPU per stored instance of the processes that "
              f"answer DICOM (pacsweb's {args.listeners} listener(s), Orthanc), from /proc, the PostgreSQL server "
              f"excluded; "
              f"load average now: {load_average()}")
        print(STORE_ROW.format(*STORE_COLUMNS))
        problems = []
        for name in args.targets:
            product, database = TARGETS[name]
            for size in args.sizes:
                megabytes = sum(p.stat().st_size for p in files[size]) / 1e6
                size_label = f"{size} {megabytes / args.n * 1000:.0f} kB"
                for associations in args.associations:
                    run_dir = work_dir / f"{name}-{size}-{associations}"
                    run_dir.mkdir()
                    with start(name, postgres_url, args.listeners) as target:
                        result = measure_store(target, files[size], warmups[size], associations, run_dir)
                        expected = STORE_WARMUP + args.n
                        if result.errors or result.stored != expected:
                            problems.append((f"{name} {size} x{associations}", result, expected, target.log()))
                    print(STORE_ROW.format(
                        product, database, size_label, associations, f"{args.n / result.elapsed:.1f}",
                        f"{megabytes / result.elapsed:.1f}", f"{result.elapsed:.2f}",
                        f"{result.cpu / args.n * 1000:.2f}", f"{result.stored}/{expected}",
                    ), flush=True)
        for label, result, expected, log in problems:
            print(f"\n--- {label}: {result.stored} of {expected} instances stored")
            for message in result.errors:
                print(f"  {message}")
            print(f"  last lines of the server log:\n{tail(log)}")
        return bool(problems)
    finally:
        remove(work_dir)


# --- C-FIND: filling the targets ----------------------------------------------------


def fill_pacsweb(target, count):
    """Fill through SQL, after checking on CHECK_STUDIES that the rows equal those ingest writes."""
    specs = [indexfill.study(i) for i in CHECK_STUDIES]
    for spec in specs:
        for body in indexfill.instance_files(spec):
            status, answer = servers.request_json(target.url + "/instances", method="POST", body=body,
                                                  headers={"Content-Type": "application/dicom"})
            if status != 200:
                raise RuntimeError(f"POST /instances: HTTP {status}: {answer}")
    patients = sorted({patient_public_id(spec.patient_id) for spec in specs})
    ingested = indexfill.snapshot(target.database_url, patients)
    for patient in patients:
        status, answer = servers.request_json(f"{target.url}/patients/{patient}", method="DELETE")
        if status != 200:
            raise RuntimeError(f"DELETE /patients/{patient}: HTTP {status}: {answer}")
    started = time.perf_counter()
    indexfill.fill(target.database_url, count, NODE_NAME)
    elapsed = time.perf_counter() - started
    filled = indexfill.snapshot(target.database_url, patients)
    differences = [
        f"  {key[0]} {key[1]}: ingest {ingested.get(key)!r}\n  {' ' * len(key[0] + key[1])}  fill   {filled.get(key)!r}"
        for key in sorted(set(ingested) | set(filled)) if ingested.get(key) != filled.get(key)
    ]
    if differences or not ingested:
        raise RuntimeError("the SQL fill does not write what ingest writes:\n" + "\n".join(differences))
    print(f"{target.name}: index filled through SQL (COPY) in {elapsed:.0f} s; the rows of studies "
          f"{' and '.join(map(str, CHECK_STUDIES))} ({len(ingested)} rows: patient, studies, series, instances) "
          "equal those POST /instances wrote for the same files, ids and timestamps aside", flush=True)


class SmallFiles:
    """The instances of the data set in study order, made on first use and kept for the next target."""

    def __init__(self):
        self._files = []
        self._lock = threading.Lock()

    def __getitem__(self, index):
        with self._lock:
            while len(self._files) <= index:
                self._files.extend(indexfill.instance_files(
                    indexfill.study(len(self._files) // indexfill.INSTANCES_PER_STUDY)))
            return self._files[index]


def fill_orthanc(target, count, files, concurrency):
    """POST the instances of `count` studies with `concurrency` keep-alive connections."""
    total = count * indexfill.INSTANCES_PER_STUDY
    address = urlparse(target.url)
    next_index = iter(range(total))
    lock = threading.Lock()
    errors = []
    done = [0]

    def client():
        conn = http.client.HTTPConnection(address.hostname, address.port, timeout=ingest.REQUEST_TIMEOUT)
        try:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None or errors:
                    return
                error = ingest.post(conn, target.auth_header, files[index])
                with lock:
                    done[0] += 1
                    if error:
                        errors.append(error)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(PROGRESS_SECONDS)
            elapsed = time.perf_counter() - started
            print(f"  {target.name}: {done[0]}/{total} instances in {elapsed:.0f} s ({done[0] / elapsed:.0f}/s)",
                  file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"filling {target.name}: {len(errors)} failed POST /instances, first: {errors[0]}")
    if target.database_url:
        with psycopg.connect(target.database_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    print(f"{target.name}: index filled through POST /instances in {elapsed:.0f} s "
          f"({total / elapsed:.0f} instances/s, {concurrency} connections, files of "
          f"{len(files[0]) / 1000:.1f} kB){'; then VACUUM ANALYZE' if target.database_url else ''}", flush=True)


# --- C-FIND: the queries ------------------------------------------------------------


@dataclass
class FindResult:
    latencies: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    answers: list = field(default_factory=list)  # (StudyInstanceUID, NumberOfStudyRelatedInstances) of the 1st run
    cpu: float | None = None  # the server's CPU seconds over the timed runs


def dcmtk_command(tool, target, *options):
    return [tool, "-aet", CALLING_AET, "-aec", target.aet, *options, "127.0.0.1", str(target.dicom_port)]


def findscu_command(target, query, *options):
    keys = {"QueryRetrieveLevel": "STUDY", **dict.fromkeys(RETURN_KEYS, ""), **query.keys}
    arguments = []
    for keyword, value in keys.items():
        arguments += ["-k", f"{keyword}={value}" if value else keyword]
    return dcmtk_command(FINDSCU, target, "-S", *options, *arguments)


def timed_run(command, result, timed):
    """Run a DCMTK tool; note its time when `timed`, and a failure when it exits non-zero or logs
    anything (callers ask for warnings and errors only)."""
    started = time.perf_counter()
    try:
        completed = subprocess.run(command, env=DCMTK_ENV, capture_output=True, text=True, timeout=FIND_TIMEOUT,
                                   check=False)
    except subprocess.TimeoutExpired:
        result.errors.append(f"no answer within {FIND_TIMEOUT} s")
        return
    took = time.perf_counter() - started
    # DCMTK tools exit with 0 after a refused or failed query too: what they log tells.
    if completed.returncode != 0 or completed.stderr or completed.stdout:
        result.errors.append(f"exit {completed.returncode}: {(completed.stderr or completed.stdout)[:300]!r}")
    if timed:
        result.latencies.append(took)


def measure_echo(target, repetitions):
    """The floor of every query: start a DCMTK tool, associate, one exchange, release."""
    result = FindResult()
    for repetition in range(FIND_WARMUP + repetitions):
        if repetition == FIND_WARMUP:
            cpu_before = target_cpu(target)
        timed_run(dcmtk_command(ECHOSCU, target, "-ll", "warn"), result, repetition >= FIND_WARMUP)
    result.cpu = target_cpu(target) - cpu_before
    return result


def measure_find(target, query, repetitions, work_dir):
    """One findscu process (one association) per run; the first run also keeps the answers."""
    result = FindResult()
    answers_dir = work_dir / f"{target.name}-{query.label.split()[0]}"
    answers_dir.mkdir()
    timed_run(findscu_command(target, query, "-ll", "warn", "-X", "-od", str(answers_dir)), result, False)
    for path in sorted(answers_dir.iterdir()):
        answer = pydicom.dcmread(path)
        result.answers.append((str(answer.get("StudyInstanceUID", "")),
                               str(answer.get("NumberOfStudyRelatedInstances", ""))))
    for repetition in range(1, FIND_WARMUP + repetitions):
        if repetition == FIND_WARMUP:
            cpu_before = target_cpu(target)
        timed_run(findscu_command(target, query, "-ll", "warn"), result, repetition >= FIND_WARMUP)
    result.cpu = target_cpu(target) - cpu_before
    return result


def check_answers(query, answers, count):
    """What is wrong with a query's answers on an index of studies 0 .. count-1 (empty: nothing)."""
    expected = {s.study_uid for s in map(indexfill.study, range(count)) if query.matches(s)}
    returned = [uid for uid, _ in answers]
    problems = []
    if len(returned) != len(set(returned)):
        problems.append(f"{len(returned) - len(set(returned))} studies returned more than once")
    missing, extra = expected - set(returned), set(returned) - expected
    if missing:
        problems.append(f"{len(missing)} expected studies missing, e.g. {sorted(missing)[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected studies, e.g. {sorted(extra)[:3]}")
    wrong_counts = sorted({n for _, n in answers} - {str(indexfill.INSTANCES_PER_STUDY)})
    if wrong_counts:
        problems.append(f"NumberOfStudyRelatedInstances {wrong_counts} instead of {indexfill.INSTANCES_PER_STUDY}")
    return len(expected), problems


FIND_COLUMNS = ("target", "index", "studies", "query", "answers", "expected", "p50 ms", "p95 ms", "max ms",
                "CPU ms", "check")
FIND_ROW = "{:<8} {:<9} {:>7} {:<21} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7} {:<5}"


def run_find(args, postgres_url):
    runs = FIND_WARMUP + args.repetitions
    print(f"\nC-FIND, STUDY level, Study Root, with findscu: one process and one association per query, timed "
          f"from the start of the process to its exit; {FIND_WARMUP} warm-up then {args.repetitions} timed runs "
          f"per query; every query also asks for {', '.join(RETURN_KEYS)}. \"C-ECHO\": the same for echoscu, "
          "the floor of every query (process start, association, release). CPU ms = user + system CPU per timed "
          "run of the process that answers DICOM (pacsweb's listener, Orthanc), from /proc; the database server "
          "excluded (Orthanc on SQLite includes its index)")
    print(f"index: studies of {indexfill.SERIES_PER_STUDY} series x {indexfill.INSTANCES_PER_SERIES} instances, "
          "2 studies per patient, dates over 2015-2024, 10 modalities (every third study has an extra CT series)")
    if args.orthanc_studies != args.studies:
        print(f"NOTE: the Orthanc targets hold only the first {args.orthanc_studies} of the {args.studies} studies "
              "(--orthanc-studies): their answers and latencies are on a smaller index than pacsweb's")
    files = SmallFiles()
    work_dir = scratch_dir("bench-dicom-find-")
    rows, problems, failed = [], [], False
    try:
        for name in args.targets:
            product, database = TARGETS[name]
            if product == "pacsweb" and database != "postgres":
                print(f"{name}: not queried (the C-FIND index is filled through PostgreSQL)", flush=True)
                continue
            count = args.studies if product == "pacsweb" else args.orthanc_studies
            with start(name, postgres_url) as target:
                try:
                    if product == "pacsweb":
                        fill_pacsweb(target, count)
                    else:
                        fill_orthanc(target, count, files, args.fill_concurrency)
                    stored = statistics(target)["CountInstances"]
                    if stored != count * indexfill.INSTANCES_PER_STUDY:
                        raise RuntimeError(f"{stored} instances in the index instead of "
                                           f"{count * indexfill.INSTANCES_PER_STUDY}")
                except RuntimeError as error:
                    print(f"\n--- {name}: {error}\n  last lines of the server log:\n{tail(target.log())}", flush=True)
                    failed = True
                    continue
                print(f"{target.name}: querying; load average now: {load_average()}", flush=True)
                results = {"C-ECHO": measure_echo(target, args.repetitions)}
                for query in QUERIES:
                    results[query.label] = measure_find(target, query, args.repetitions, work_dir)
                log = target.log()
            for label, result in results.items():
                query = next((q for q in QUERIES if q.label == label), None)
                expected, wrong = check_answers(query, result.answers, count) if query else ("-", [])
                if result.errors:
                    wrong.append(f"{len(result.errors)} of {runs} runs failed, e.g. {result.errors[0]}")
                if wrong:
                    problems.append((f"{name} {label}", wrong, log))
                latencies = sorted(result.latencies)
                rows.append(FIND_ROW.format(
                    product, database, count, label, len(result.answers) if query else "-", expected,
                    f"{percentile(latencies, 50) * 1000:.1f}", f"{percentile(latencies, 95) * 1000:.1f}",
                    f"{latencies[-1] * 1000:.1f}" if latencies else "-",
                    f"{result.cpu / len(latencies) * 1000:.1f}" if latencies else "-", "WRONG" if wrong else "ok"))
    finally:
        remove(work_dir)
    print()
    print(FIND_ROW.format(*FIND_COLUMNS))
    for row in rows:
        print(row)
    for label, wrong, log in problems:
        print(f"\n--- {label}:")
        for message in wrong:
            print(f"  {message}")
        print(f"  last lines of the server log:\n{tail(log)}")
    return failed or bool(problems)


if __name__ == "__main__":
    sys.exit(main())
