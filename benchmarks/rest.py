"""REST benchmark: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) and GET /studies/{id}, pacsweb and Orthanc side by side.

    .venv/bin/python -m benchmarks.rest                       # 10,000 studies, a 500-instance study
    .venv/bin/python -m benchmarks.rest --studies 200 --big-study 20
    .venv/bin/python -m benchmarks.rest --targets pacsweb-sqlite pacsweb-postgres orthanc-sqlite orthanc-postgres

Every target (pacsweb on PostgreSQL; Orthanc with its DICOMweb plugin, on SQLite
and optionally on PostgreSQL) is started fresh, filled through POST /instances by
4 clients with the same data, and then measured in turn:

1. QIDO-RS study searches by PatientID (exact), PatientName (prefix wildcard) and
   StudyDate (a one-month range), limit=100, each repeated on one keep-alive
   connection. The index holds --studies small studies (one 8x8 instance each),
   every one with its own patient, name and date, so each search matches a few
   studies; the result is checked against what the generated data says it must be.
2. GET /studies/{id} (Orthanc's REST API) of 200 random studies: the ids are
   Orthanc's, which pacsweb computes alike, so both get the same requests.
3. WADO-RS retrieval of one study of --big-study 512x512 CT instances as
   multipart/related: the stream is read whole and its parts counted, while the
   resident memory of the server (gunicorn's master and workers summed; Orthanc's
   single process) is sampled every 50 ms.
4. WADO-RS metadata of that study (what OHIF asks when it opens a study), once
   unmeasured, then METADATA_REPETITIONS times on one keep-alive connection: latency
   and the server's CPU per request (its process tree, from /proc); every answer
   must hold one data set per instance.
5. GET /instances/{id}/tags?simplify (Orthanc's REST API; what pyorthanc's
   `Instance.simplified_tags` asks) of each instance of that study, in TAGS_PASSES
   passes on one keep-alive connection: latency and server CPU per request.
6. STOW-RS of --stow new small and --stow new large instances, one instance per
   request, by 4 clients.

The PostgreSQL server is the one in DATABASE_URL, or a throwaway embedded one when
that is unset. Everything runs on this machine: the client shares the CPUs with
the server under test, so figures compare targets with each other, not with a
deployment. Exits 1 when a request failed, a count is wrong or the targets'
search results differ.
"""

import argparse
import contextlib
import datetime
import http.client
import json
import os
import queue
import random
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlparse

import psutil
import psycopg

from archive.identifiers import instance_public_id, study_public_id
from benchmarks import ingest
from tests import orthanc, servers
from tests.dicomgen import make_instance, uid
from tests.services import remove, scratch_dir

TARGETS = ("pacsweb-sqlite", "pacsweb-postgres", "orthanc-sqlite", "orthanc-postgres")  # named as in benchmarks.ingest.TARGETS
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
CONCURRENCY = 4  # clients of the fill and of STOW-RS
SMALL, LARGE = 8, 512  # rows = columns of the 16-bit CT instances
QUERY_REPETITIONS = 100
QUERY_LIMIT = 100
QUERY_WARMUP = 5  # requests on a new connection before the clock starts: the first one a
#                   gunicorn worker serves on a route pays for imports
STUDY_GETS = 200
STOW_INSTANCES = 1000  # default of --stow
STOW_STUDIES = 4
RSS_INTERVAL = 0.05
REQUEST_TIMEOUT = 600
SEED = 20260115
# Patient names are four syllables spelling the study's index in base 20, most
# significant first: a prefix of three syllables matches a block of 20 studies.
SYLLABLES = ("BA", "KO", "LI", "MU", "NE", "RO", "SA", "TI", "VE", "DO",
             "FA", "GU", "HI", "JO", "KE", "LA", "MI", "NO", "PE", "RU")
GIVEN_NAMES = ("JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA", "DAVID", "SUSAN")
FIRST_DATE = datetime.date(1990, 1, 1)
STUDY_UID = "0020000D"
REFERENCED_SOP_SEQUENCE, FAILED_SOP_SEQUENCE = "00081199", "00081198"


def main():
    args = parse_args()
    print_header(args)
    data = Data(args.studies, args.big_study, args.stow)
    with ingest.postgres_server(args.targets) as postgres_url:
        if postgres_url:
            with psycopg.connect(postgres_url) as conn:
                print(f"PostgreSQL: {conn.info.parameter_status('server_version')} "
                      f"at {conn.info.host} port {conn.info.port}")
        print(f"data: {args.studies} studies of 1 instance ({data.small_mb():.1f} MB), "
              f"a study of {args.big_study} instances ({data.big_mb():.1f} MB); "
              f"generated in {data.generation_seconds:.1f} s", flush=True)
        results = {}
        for name in args.targets:
            results[name] = measure_target(name, args, postgres_url, data)
    failed = report(args, data, results)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if failed:
        print("FAILED: some requests failed, some counts are wrong or the targets disagree (see above)")
    return 1 if failed else 0


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rest", description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=10000,
                        help="small studies in the index the searches run on (default 10000)")
    parser.add_argument("--big-study", type=int, default=500,
                        help="512x512 instances of the study retrieved with WADO-RS (default 500)")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=["pacsweb-postgres", "orthanc-sqlite"])
    parser.add_argument("--stow", type=int, default=STOW_INSTANCES,
                        help=f"instances of each size stored by STOW-RS (default {STOW_INSTANCES}; a few hundred "
                             "take under a second, too short to compare runs on a shared machine)")
    parser.add_argument("--workers", type=int, default=4, help="pacsweb gunicorn processes (default 4)")
    parser.add_argument("--threads", type=int, default=4, help="pacsweb threads per process (default 4)")
    args = parser.parse_args()
    if not 40 <= args.studies < len(SYLLABLES) ** 4:
        parser.error(f"--studies must be from 40 (a name search matches a block of 20 studies in the middle) "
                     f"to {len(SYLLABLES) ** 4 - 1} (four syllables of patient name)")
    return args


def print_header(args):
    command = shlex.join([os.path.relpath(sys.executable), "-m", "benchmarks.rest", *sys.argv[1:]])
    print(f"command: {command}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {ingest.cpu_model()}, "
          f"{ingest.memory_gb():.1f} GB RAM, load average at the start: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    plugin = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "orthanc-dicomweb"],
                            capture_output=True, text=True, check=False).stdout or "unknown"
    print(f"software: Python {sys.version.split()[0]}, pacsweb {ingest.git_revision()}, "
          f"Orthanc {orthanc.version()}, Orthanc DICOMweb plugin {plugin}")
    # The servers inherit this environment: a PACS_* variable set here changes them.
    inherited = ", ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("PACS_"))
    print(f"pacsweb: gunicorn gthread, {args.workers} workers x {args.threads} threads, "
          + (f"settings from the environment: {inherited}" if inherited else "other settings at their defaults"))
    print("Orthanc: Debian package defaults (HTTP threads 50, PostgreSQL index plugin with 1 connection), "
          "DICOMweb plugin at /dicom-web/ with its defaults")
    print(f"method: every target fresh, filled by POST /instances ({CONCURRENCY} clients); searches and GETs "
          f"one at a time on a keep-alive connection after {QUERY_WARMUP} unmeasured requests; latency = request "
          f"to last byte, seen by the client; MB = 10^6 bytes; RSS = resident set, summed over gunicorn's "
          f"processes (shared pages counted in each), sampled every {RSS_INTERVAL * 1000:.0f} ms")
    print("NOTE: preliminary figures - client and servers share this machine, which may be running other work.")


# --- the data ---------------------------------------------------------------------


@dataclass(frozen=True)
class Study:
    patient_id: str
    patient_name: str
    study_uid: str
    study_date: datetime.date

    @property
    def public_id(self):
        return study_public_id(self.patient_id, self.study_uid)


@dataclass(frozen=True)
class Search:
    label: str
    parameters: dict
    expected: frozenset  # StudyInstanceUIDs the search must find


class Data:
    """The instances every target gets, and the searches with their expected results."""

    def __init__(self, count, big, stow=STOW_INSTANCES):
        started = time.perf_counter()
        # A permutation of `count` consecutive days: every study has its own date,
        # and a month holds about 30 of them whatever the count.
        days = random.Random(SEED).sample(range(count), count)
        self.studies = [small_study(i, FIRST_DATE + datetime.timedelta(days=days[i])) for i in range(count)]
        self.small = [small_instance(s) for s in self.studies]
        self.big_study_uid = uid("bench-rest", "big")
        # Outside every search below: no syllable starts with Z, and before FIRST_DATE.
        self.big = [make_instance(patient_id="RESTBIG", patient_name="ZBIG^STUDY", study_uid=self.big_study_uid,
                                  series_uid=uid(self.big_study_uid, 1), sop_uid=uid(self.big_study_uid, 1, i),
                                  instance_number=i, rows=LARGE, columns=LARGE, study_date="19800101")
                    for i in range(1, big + 1)]
        self.big_instance_ids = [instance_public_id("RESTBIG", self.big_study_uid, uid(self.big_study_uid, 1),
                                                    uid(self.big_study_uid, 1, i)) for i in range(1, big + 1)]
        self.stow = {size: stow_instances(size, stow) for size in (SMALL, LARGE)}
        self.searches = searches(self.studies)
        self.study_gets = random.Random(SEED).sample(self.studies, min(STUDY_GETS, count))
        self.generation_seconds = time.perf_counter() - started

    def small_mb(self):
        return sum(map(len, self.small)) / 1e6

    def big_mb(self):
        return sum(map(len, self.big)) / 1e6


def searches(studies):
    """The study searches over `studies`, each with the StudyInstanceUIDs it must find."""
    middle = studies[len(studies) // 2]
    prefix = middle.patient_name[:6]
    first = (FIRST_DATE + datetime.timedelta(days=len(studies) // 2)).replace(day=1)
    last = (first + datetime.timedelta(days=31)).replace(day=1) - datetime.timedelta(days=1)
    by_id = studies[len(studies) // 3]

    def search(label, key, value, matches):
        return Search(label, {key: value, "limit": str(QUERY_LIMIT)},
                      frozenset(s.study_uid for s in studies if matches(s)))

    # Each matches at most about 31 studies, below the limit: the whole answer can be compared.
    return [
        search("PatientID exact", "PatientID", by_id.patient_id, lambda s: s.patient_id == by_id.patient_id),
        search("PatientName wildcard", "PatientName", prefix + "*", lambda s: s.patient_name.startswith(prefix)),
        search("StudyDate 1 month", "StudyDate", f"{first:%Y%m%d}-{last:%Y%m%d}",
               lambda s: first <= s.study_date <= last),
    ]


def small_study(index, date):
    digits = [index // len(SYLLABLES) ** k % len(SYLLABLES) for k in (3, 2, 1, 0)]
    return Study(
        patient_id=f"REST{index:06d}",
        patient_name="".join(SYLLABLES[d] for d in digits) + "^" + GIVEN_NAMES[index % len(GIVEN_NAMES)],
        study_uid=uid("bench-rest", "study", index),
        study_date=date,
    )


def small_instance(study):
    series_uid = uid(study.study_uid, 1)
    return make_instance(patient_id=study.patient_id, patient_name=study.patient_name, study_uid=study.study_uid,
                         series_uid=series_uid, sop_uid=uid(series_uid, 1), rows=SMALL, columns=SMALL,
                         study_date=f"{study.study_date:%Y%m%d}", accession_number=study.patient_id)


def stow_instances(side, count=STOW_INSTANCES):
    """`count` new instances of one size, over STOW_STUDIES new studies."""
    files = []
    for i in range(count):
        study_uid = uid("bench-rest", "stow", side, i % STOW_STUDIES)
        series_uid = uid(study_uid, 1)
        files.append(make_instance(patient_id=f"RESTSTOW{i % STOW_STUDIES}", study_uid=study_uid,
                                   series_uid=series_uid, sop_uid=uid(series_uid, i),
                                   instance_number=i // STOW_STUDIES + 1, rows=side, columns=side))
    return files


# --- the servers ------------------------------------------------------------------


@dataclass
class Target:
    url: str
    auth_header: str
    log: Callable[[], str]  # the server's log so far, shown when something fails
    pid: int  # the server process; pacsweb's workers are its children

    def connection(self):
        address = urlparse(self.url)
        return http.client.HTTPConnection(address.hostname, address.port, timeout=REQUEST_TIMEOUT)


@contextlib.contextmanager
def start(name, args, postgres_url):
    _, database = ingest.TARGETS[name]
    if name.startswith("orthanc"):
        config = {"DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        with orthanc.OrthancServer(database, postgres_url=postgres_url, config=config,
                                   plugins=[DICOMWEB_PLUGIN]) as server:
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
        if server is not None and database == "postgres":
            name = urlparse(server.database_url).path.lstrip("/")
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        remove(directory)


# --- the measurements -------------------------------------------------------------


@dataclass
class Results:
    fill_seconds: float = 0.0
    searches: dict = field(default_factory=dict)  # label -> (latencies, StudyInstanceUIDs found)
    study_gets: list = field(default_factory=list)  # latencies
    retrieve: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)  # latencies, CPU seconds per request
    tags: dict = field(default_factory=dict)  # the same, for /instances/{id}/tags?simplify
    stow: dict = field(default_factory=dict)  # side -> (elapsed, latencies)
    stored: int = -1  # CountInstances at the end
    errors: list = field(default_factory=list)
    log: str = ""  # the server's log, kept when something failed


def measure_target(name, args, postgres_url, data):
    results = Results()
    print(f"\n{name}: starting", flush=True)
    with start(name, args, postgres_url) as target:
        files = data.small + data.big
        started = time.perf_counter()
        _, errors = send_all(target, files, ingest.post, progress=f"{name}: filled")
        results.fill_seconds = time.perf_counter() - started
        results.errors += ["fill: " + e for e in errors]
        print(f"{name}: filled {len(files)} instances ({(data.small_mb() + data.big_mb()):.0f} MB) in "
              f"{results.fill_seconds:.0f} s ({len(files) / results.fill_seconds:.0f} inst/s)", flush=True)

        for search in data.searches:
            results.searches[search.label] = run_search(target, search, results.errors)
        print(f"{name}: searches done", flush=True)
        results.study_gets = get_studies(target, data.study_gets, results.errors)
        print(f"{name}: GET /studies/{{id}} done", flush=True)
        results.retrieve = retrieve(target, data.big_study_uid, len(data.big), results.errors)
        print(f"{name}: WADO-RS retrieve done", flush=True)
        results.metadata = metadata(target, data.big_study_uid, len(data.big), results.errors)
        print(f"{name}: WADO-RS metadata done", flush=True)
        results.tags = instance_tags(target, data.big_instance_ids, results.errors)
        print(f"{name}: GET /instances/{{id}}/tags done", flush=True)
        for side, files in data.stow.items():
            started = time.perf_counter()
            latencies, errors = send_all(target, [stow_body(f) for f in files], stow_post)
            results.stow[side] = (time.perf_counter() - started, latencies)
            results.errors += [f"STOW-RS {side}x{side}: {e}" for e in errors]
        print(f"{name}: STOW-RS done", flush=True)
        results.stored = ingest.count_instances(target)
        if results.errors or results.stored != len(data.small) + len(data.big) + 2 * args.stow:
            results.log = target.log()
    return results


def send_all(target, bodies, send, progress=None):
    """Send `bodies` with `send(conn, auth_header, body)` (None or an error message) over
    CONCURRENCY keep-alive connections taking from a shared queue; (latencies, errors).
    With `progress`, print a line at every tenth of the way."""
    work = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    latencies, errors = [], []  # list.append is atomic: the threads share them
    done = [0]
    lock = threading.Lock()
    started = time.perf_counter()

    def client():
        conn = target.connection()
        try:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                before = time.perf_counter()
                error = send(conn, target.auth_header, body)
                latencies.append(time.perf_counter() - before)
                if error:
                    errors.append(error)
                if progress:
                    with lock:
                        done[0] += 1
                        if done[0] % max(1, len(bodies) // 10) == 0:
                            print(f"{progress} {done[0]}/{len(bodies)} in {time.perf_counter() - started:.0f} s",
                                  flush=True)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def get(conn, target, path, accept):
    """(status, body) of a GET on a kept-alive connection."""
    conn.request("GET", path, headers={"Authorization": target.auth_header, "Accept": accept})
    response = conn.getresponse()
    return response.status, response.read()


def run_search(target, search, errors):
    """(latencies, StudyInstanceUIDs of the first answer) of QUERY_REPETITIONS identical searches."""
    path = "/dicom-web/studies?" + query_string(search)
    conn = target.connection()
    latencies, found = [], None
    try:
        for repetition in range(QUERY_WARMUP + QUERY_REPETITIONS):
            started = time.perf_counter()
            status, body = get(conn, target, path, "application/dicom+json")
            took = time.perf_counter() - started
            if status not in (200, 204):  # PS3.18 §10.6.3: 204 is no match (Orthanc sends 200 and [])
                errors.append(f"{search.label}: HTTP {status}: {body[:300].decode(errors='replace')}")
                return latencies, found
            uids = {study[STUDY_UID]["Value"][0] for study in (json.loads(body) if body else [])}
            if found is None:
                found = uids
            elif uids != found:
                errors.append(f"{search.label}: repetition {repetition} found {len(uids)} studies, "
                              f"the first {len(found)}")
            if repetition >= QUERY_WARMUP:
                latencies.append(took)
    finally:
        conn.close()
    return latencies, found


def query_string(search):
    # The wildcard is sent as is (RFC 3986 allows it in a query): Orthanc 1.10
    # takes "%2A" for a literal character and matches nothing.
    return urlencode(search.parameters, safe="*")


def get_studies(target, studies, errors):
    """Latencies of GET /studies/{id}, one study after the other, after QUERY_WARMUP unmeasured ones."""
    conn = target.connection()
    latencies = []
    try:
        for study in studies[:QUERY_WARMUP] + studies:
            started = time.perf_counter()
            status, body = get(conn, target, f"/studies/{study.public_id}", "application/json")
            latencies.append(time.perf_counter() - started)
            if status != 200 or json.loads(body).get("ID") != study.public_id:
                errors.append(f"GET /studies/{study.public_id}: HTTP {status}: {body[:300].decode(errors='replace')}")
    finally:
        conn.close()
    return latencies[QUERY_WARMUP:]


class RssSampler:
    """Peak of the summed resident set of a process and its descendants, sampled in a thread."""

    def __init__(self, pid):
        self.root = psutil.Process(pid)
        self.before = self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def rss(self):
        total = 0
        for process in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total

    def _run(self):
        while not self._stop.wait(RSS_INTERVAL):
            self.peak = max(self.peak, self.rss())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def retrieve(target, study_uid, expected, errors):
    """Read the whole multipart answer of WADO-RS for the study; count its bytes and parts."""
    conn = target.connection()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    received = parts = 0
    try:
        with RssSampler(target.pid) as rss:
            started = time.perf_counter()
            conn.request("GET", f"/dicom-web/studies/{study_uid}",
                         headers={"Authorization": target.auth_header,
                                  "Accept": 'multipart/related; type="application/dicom"'})
            response = conn.getresponse()
            first_byte = time.perf_counter() - started
            if response.status != 200:
                errors.append(f"WADO-RS: HTTP {response.status}: {response.read()[:300].decode(errors='replace')}")
                return {}
            delimiter = b"--" + boundary(response.getheader("Content-Type", "")).encode()
            tail = b""  # the end of the previous read: a delimiter may straddle two reads
            while count := response.readinto(buffer):
                received += count
                window = tail + bytes(view[:count])
                parts += window.count(delimiter) - tail.count(delimiter)
                tail = window[-(len(delimiter) - 1):]
            elapsed = time.perf_counter() - started
    finally:
        conn.close()
    parts -= 1  # the close delimiter "--boundary--" ends the body
    if parts != expected:
        errors.append(f"WADO-RS: {parts} parts instead of {expected}")
    return {"bytes": received, "parts": parts, "seconds": elapsed, "first_byte": first_byte,
            "rss_before": rss.before, "rss_peak": rss.peak}


METADATA_REPETITIONS = 10
TAGS_PASSES = 3


def metadata(target, study_uid, expected, errors):
    """The study's WADO-RS metadata, once unmeasured then METADATA_REPETITIONS times."""
    def check(status, body):
        if status != 200:
            return f"HTTP {status}: {body[:300].decode(errors='replace')}"
        count = len(json.loads(body))
        return None if count == expected else f"{count} data sets instead of {expected}"

    path = f"/dicom-web/studies/{study_uid}/metadata"
    return repeated(target, [(path, "application/dicom+json", check)], METADATA_REPETITIONS, errors)


def instance_tags(target, instance_ids, errors):
    """Each instance's /tags?simplify, in a pass unmeasured then TAGS_PASSES passes."""
    def check(status, body):
        if status != 200 or json.loads(body).get("PatientID") != "RESTBIG":
            return f"HTTP {status}: {body[:200]!r}"
        return None

    requests = [(f"/instances/{instance_id}/tags?simplify", "application/json", check) for instance_id in instance_ids]
    return repeated(target, requests, TAGS_PASSES, errors)


def repeated(target, requests, passes, errors):
    """`requests` ((path, accept, check(status, body) -> error or None) each) sent in order
    on one keep-alive connection, once unmeasured then `passes` times: {"latencies":
    seconds per request, "cpu": server CPU seconds per request}, or {} when one failed."""
    conn = target.connection()
    latencies = []
    try:
        for repetition in range(passes + 1):
            if repetition == 1:
                cpu_before = ingest.cpu_seconds(target.pid)
            for path, accept, check in requests:
                started = time.perf_counter()
                status, body = get(conn, target, path, accept)
                if repetition:
                    latencies.append(time.perf_counter() - started)
                error = check(status, body)
                if error:
                    errors.append(f"GET {path}: {error}")
                    return {}
        cpu = (ingest.cpu_seconds(target.pid) - cpu_before) / (passes * len(requests))
    finally:
        conn.close()
    return {"latencies": latencies, "cpu": cpu}


def boundary(content_type):
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip('"')
    raise ValueError(f"no boundary in Content-Type {content_type!r}")


STOW_BOUNDARY = uuid.uuid4().hex


def stow_body(file):
    return (f"--{STOW_BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + file
            + f"\r\n--{STOW_BOUNDARY}--\r\n".encode())


def stow_post(conn, auth_header, body):
    """Store one instance with STOW-RS; None on success, else what went wrong."""
    try:
        conn.request("POST", "/dicom-web/studies", body=body, headers={
            "Authorization": auth_header, "Accept": "application/dicom+json",
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={STOW_BOUNDARY}'})
        response = conn.getresponse()
        answer = response.read()
    except (OSError, http.client.HTTPException) as error:
        conn.close()  # the next request opens a new connection
        return f"{type(error).__name__}: {error}"
    try:
        answer_json = json.loads(answer)
        stored = answer_json.get(REFERENCED_SOP_SEQUENCE, {}).get("Value", [])
        # Orthanc sends an empty FailedSOPSequence when nothing failed.
        failed = answer_json.get(FAILED_SOP_SEQUENCE, {}).get("Value", [])
    except (ValueError, AttributeError):
        stored, failed = [], []
    if response.status != 200 or len(stored) != 1 or failed:
        return f"HTTP {response.status}: {' '.join(answer.decode(errors='replace').split())[:300]}"
    return None


# --- the report -------------------------------------------------------------------


def report(args, data, results):
    """Print the tables and every problem; True when something failed."""
    names = list(results)
    print("\nfill through POST /instances (not a figure: context only)")
    for name in names:
        print(f"  {name:<17} {results[name].fill_seconds:6.0f} s")

    print(f"\nQIDO-RS GET /dicom-web/studies, {QUERY_REPETITIONS} identical searches each, index of "
          f"{args.studies + 1} studies")
    row = "{:<21} {:<38} {:<17} {:>8} {:>7} {:>7}"
    print(row.format("search", "parameters", "target", "studies", "p50 ms", "p95 ms"))
    problems = []
    for search in data.searches:
        for name in names:
            latencies, found = results[name].searches.get(search.label, ([], None))
            print(row.format(search.label, query_string(search), name,
                             f"{len(found) if found is not None else '-'}/{len(search.expected)}",
                             *milliseconds(latencies)))
            if found is not None and found != search.expected:
                problems.append(f"{name}: {search.label} found {len(found)} studies, expected "
                                f"{len(search.expected)} ({len(found - search.expected)} unexpected, "
                                f"{len(search.expected - found)} missing)")

    print(f"\nGET /studies/{{id}} (Orthanc REST API), {len(data.study_gets)} random studies one after the other")
    row = "{:<17} {:>7} {:>7}"
    print(row.format("target", "p50 ms", "p95 ms"))
    for name in names:
        print(row.format(name, *milliseconds(results[name].study_gets)))

    print(f"\nWADO-RS GET /dicom-web/studies/{{uid}}, one study of {args.big_study} instances of {LARGE}x{LARGE} "
          f"({data.big_mb():.0f} MB of files), multipart/related read whole; RSS of the server")
    row = "{:<17} {:>6} {:>8} {:>8} {:>8} {:>7} {:>11} {:>9} {:>7}"
    print(row.format("target", "parts", "MB read", "1st b ms", "total s", "MB/s", "RSS before", "RSS peak",
                     "growth"))
    for name in names:
        r = results[name].retrieve
        if r:
            print(row.format(name, r["parts"], f"{r['bytes'] / 1e6:.1f}", f"{r['first_byte'] * 1000:.0f}",
                             f"{r['seconds']:.2f}", f"{r['bytes'] / 1e6 / r['seconds']:.1f}",
                             f"{r['rss_before'] / 1e6:.0f} MB", f"{r['rss_peak'] / 1e6:.0f} MB",
                             f"{(r['rss_peak'] - r['rss_before']) / 1e6:+.0f} MB"))

    print(f"\nWADO-RS GET /dicom-web/studies/{{uid}}/metadata of that study, {METADATA_REPETITIONS} times one after "
          f"the other (after one unmeasured)")
    row = "{:<17} {:>7} {:>7} {:>8} {:>13}"
    print(row.format("target", "p50 ms", "p95 ms", "CPU ms", "CPU ms / inst"))
    for name in names:
        m = results[name].metadata
        if m:
            print(row.format(name, *milliseconds(m["latencies"]), f"{m['cpu'] * 1000:.1f}",
                             f"{m['cpu'] * 1000 / args.big_study:.2f}"))

    print(f"\nGET /instances/{{id}}/tags?simplify of each instance of that study, {TAGS_PASSES} passes "
          f"(after one unmeasured)")
    row = "{:<17} {:>7} {:>7} {:>8}"
    print(row.format("target", "p50 ms", "p95 ms", "CPU ms"))
    for name in names:
        t = results[name].tags
        if t:
            print(row.format(name, *milliseconds(t["latencies"]), f"{t['cpu'] * 1000:.2f}"))

    print(f"\nSTOW-RS POST /dicom-web/studies, {args.stow} new instances, one per request, "
          f"{CONCURRENCY} clients")
    row = "{:<17} {:<15} {:>7} {:>7} {:>7} {:>7}"
    print(row.format("target", "size", "inst/s", "MB/s", "p50 ms", "p95 ms"))
    for name in names:
        for side, (elapsed, latencies) in results[name].stow.items():
            size = sum(map(len, data.stow[side])) / 1e6
            print(row.format(name, f"{side}x{side} {size / args.stow * 1000:.0f} kB",
                             f"{args.stow / elapsed:.1f}", f"{size / elapsed:.1f}", *milliseconds(latencies)))

    expected_count = args.studies + args.big_study + 2 * args.stow
    for name in names:
        r = results[name]
        if r.stored != expected_count:
            problems.append(f"{name}: {r.stored} instances at the end instead of {expected_count}")
        for message in sorted(set(r.errors))[:10]:
            problems.append(f"{name}: {r.errors.count(message)} x {message}")
    for problem in problems:
        print("PROBLEM: " + problem)
    for name in names:
        if results[name].log:
            print(f"\n--- last lines of the {name} log:")
            for line in results[name].log.splitlines()[-20:]:
                print("    " + line)
    if not problems:
        print("\nchecks: every request succeeded, every search found exactly the expected studies on every "
              "target, every retrieve had every part, every instance was stored")
    return bool(problems)


def milliseconds(latencies):
    ordered = sorted(latencies)
    return [f"{ingest.percentile(ordered, p) * 1000:.1f}" for p in (50, 95)]


if __name__ == "__main__":
    sys.exit(main())
