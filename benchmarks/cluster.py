"""Cluster benchmark: ingest through 1, 2 and 3 pacsweb nodes, database round trips per instance,
and the same ingest through one and two Orthanc servers sharing one PostgreSQL index.

    .venv/bin/python -m benchmarks.cluster                  # 600 instances, nodes 1 2 3, every part
    .venv/bin/python -m benchmarks.cluster --instances 60 --studies 4 --nodes 1 2 --parts rest orthanc

1. REST: for every node count, a fresh pacsweb cluster (the first node with a new
   database, the others joining it: same database, storage directory and queues;
   gunicorn 1 worker x 4 threads each, PACS_NODE_NAME node1..nodeN) is warmed up
   (--warmup instances per node over new connections) and sent --instances 64x64
   CT instances (~9 kB) in --studies studies, one per POST /instances, by
   --clients threads over keep-alive connections, client i talking to node
   i mod N. Then GET /statistics on every node must count every instance sent,
   and the shared storage directory must hold one file per instance.
2. C-STORE: the same with one DICOM listener process (manage.py dicom_listener)
   per node, and --associations DCMTK storescu processes (association i to the
   listener of node i mod N, each its share of the files, started together; the
   clock runs until the last one exits). A store counts as failed unless storescu
   logged a Success response for it.
3. Round trips: one node (and its listener) stores --roundtrip-instances more
   instances one at a time (REST: one client; C-STORE: one association). The
   delta of pg_stat_database.xact_commit + xact_rollback of the node's database
   gives the transactions, the delta of pg_stat_statements (when the server has
   it preloaded: this script preloads it in the throwaway server it starts) the
   statements, each a round trip to PostgreSQL (BEGIN and COMMIT included). What
   the node's heartbeats do meanwhile is measured over an idle window before and
   subtracted. No job worker nor housekeeper runs, so work deferred to them is
   not counted.
4. Orthanc: the REST workload of part 1 against 1 and 2 Orthanc 1.10 servers
   (Debian packages) whose PostgreSQL index plugin points at one and the same
   fresh database, with "Lock": false (without it the second server refuses to
   start) and "SaveJobs": false as the plugin's documentation asks of servers
   sharing a database; they also share one storage directory. Failed requests
   (non-200 answers and exceptions) are counted per server: Orthanc 1.10 does
   not support several writers on one database well, and that is what is measured.

The PostgreSQL server is the one in DATABASE_URL and the Redis the one in REDIS_URL;
throwaway embedded ones when those are unset. Everything, clients included, runs
on this machine: N nodes share its CPUs, so more nodes show the cost of
coordinating through one database, not more capacity. Exits 1 when a pacsweb
request failed or a pacsweb count is wrong (Orthanc's failures are reported only).
"""

import argparse
import contextlib
import http.client
import os
import platform
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from urllib.parse import urlparse

import psutil
import psycopg
import redis

from benchmarks import ingest
from benchmarks.ingest import cpu_model, git_revision, memory_gb, percentile
from tests import orthanc, servers
from tests.dicomgen import make_instance, uid
from tests.services import EmbeddedPostgres, EmbeddedRedis, remove, scratch_dir

PARTS = ("rest", "cstore", "roundtrips", "orthanc")
SIDE = 64  # rows = columns of the 16-bit CT instances
STORESCU = "/usr/bin/storescu"
DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")  # DCMTK leaves Nagle's algorithm on unless told
CALLING_AET = "BENCHSCU"
REQUEST_TIMEOUT = 300
STORE_TIMEOUT = 900
IDLE_WINDOW = 15  # seconds of idle node whose database activity (heartbeats) is subtracted
STATS_FLUSH = 11  # seconds: an idle backend reports its transaction counts within 10 s (PGSTAT_IDLE_INTERVAL)
REPLAY = re.compile(r" conflicted \(.*\), replay \d+ in ")  # archive.db's INFO line on a replayed transaction


def main():
    args = parse_args()
    print_header(args)
    failed = False
    with postgres_server() as (postgres_url, statements), redis_server() as redis_url:
        with psycopg.connect(postgres_url) as conn:
            print(f"PostgreSQL: {conn.info.parameter_status('server_version')} at {conn.info.host} port "
                  f"{conn.info.port}; pg_stat_statements: {statements or 'not available'}")
        with contextlib.closing(redis.Redis.from_url(redis_url)) as client:
            print(f"Redis: {client.info()['redis_version']} at {redis_url}")
        work_dir = scratch_dir("bench-cluster-data-")
        try:
            data = Data(args, work_dir)
            print(f"data: {args.instances} instances of {SIDE}x{SIDE} ({data.kilobytes:.0f} kB each) in "
                  f"{args.studies} studies of {(args.studies + 1) // 2} patients; warm-up {args.warmup} other "
                  f"instances per node/server", flush=True)
            rows, problems = [], []
            # Rounds interleave the configurations, so that a change of the machine's load
            # over the run spreads over all of them.
            for round_ in range(1, args.rounds + 1):
                if "rest" in args.parts:
                    for count in args.nodes:
                        rows.append(run_pacsweb_rest(args, data, count, postgres_url, problems, round_))
                if "cstore" in args.parts:
                    for count in args.nodes:
                        rows.append(run_pacsweb_cstore(args, data, count, postgres_url, problems, round_))
                if "orthanc" in args.parts:
                    for count in args.orthanc_servers:
                        rows.append(run_orthanc_rest(args, data, count, postgres_url, problems, round_))
            report_throughput(args, rows)
            if "roundtrips" in args.parts:
                problems += run_roundtrips(args, data, postgres_url, statements)
            failed = report_problems(problems)
        finally:
            remove(work_dir)
    print(f"\nload average at the end: {load_average()}")
    if failed:
        print("FAILED: some pacsweb requests failed or some pacsweb counts are wrong (see above)")
    return 1 if failed else 0


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=600, help="instances per measurement (default 600)")
    parser.add_argument("--studies", type=int, default=20, help="studies they belong to (default 20)")
    parser.add_argument("--warmup", type=int, default=8,
                        help="instances per node (or Orthanc) before the clock starts (default 8)")
    parser.add_argument("--nodes", nargs="+", type=int, default=[1, 2, 3], help="pacsweb node counts (default 1 2 3)")
    parser.add_argument("--orthanc-servers", nargs="+", type=int, default=[1, 2],
                        help="Orthanc server counts on one database (default 1 2)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--rounds", type=int, default=3,
                        help="measurements of every configuration, each on a fresh cluster (default 3)")
    parser.add_argument("--clients", type=int, default=8, help="REST client threads (default 8)")
    parser.add_argument("--associations", type=int, default=4, help="parallel storescu associations (default 4)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads of each node's 1 worker (default 4)")
    parser.add_argument("--roundtrip-instances", type=int, default=300,
                        help="instances stored one at a time through each of REST and C-STORE to count database round "
                             "trips (default 300)")
    args = parser.parse_args()
    if args.studies < 1 or args.instances < args.studies:
        parser.error("need at least one study and at least one instance per study")
    return args


def print_header(args):
    command = shlex.join([os.path.relpath(sys.executable), "-m", "benchmarks.cluster", *sys.argv[1:]])
    # "$dcmtk: storescu v3.6.7 2022-04-22 $"
    dcmtk = subprocess.run([STORESCU, "--version"], capture_output=True, text=True, check=True).stdout.split()[2]
    plugin = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "orthanc-postgresql"],
                            capture_output=True, text=True, check=False).stdout or "unknown"
    print(f"command: {command}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
          f"{memory_gb():.1f} GB RAM, load average at the start: {load_average()}")
    print(f"software: Python {platform.python_version()}, pacsweb {git_revision()}, Orthanc {orthanc.version()}, "
          f"Orthanc PostgreSQL plugin {plugin}, DCMTK {dcmtk}, gunicorn {package_version('gunicorn')}")
    # The servers inherit this environment: a PACS_* variable set here changes them.
    inherited = ", ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("PACS_"))
    print(f"pacsweb: each node gunicorn gthread 1 worker x {args.threads} threads (+ 1 dicom_listener process for "
          "C-STORE), all nodes on one database, storage directory and Redis; "
          + (f"settings from the environment: {inherited}" if inherited else
             "other settings at their defaults (fsync on, PostgreSQL pool of 4 per process)"))
    print("Orthanc: Debian package defaults (fsync on, HTTP threads 50), PostgreSQL index plugin (1 connection) "
          "with Lock false, SaveJobs false, one database and one storage directory for all servers; TCP_NODELAY=1")
    print(f"clients: REST {args.clients} threads (keep-alive, client i -> node i mod N); C-STORE {args.associations} "
          f"storescu processes (association i -> listener i mod N); each line a fresh cluster, {args.warmup} "
          "warm-up instances per node first; latency = one POST, seen by the client")
    print("NOTE: clients, nodes, PostgreSQL and Redis share this machine's CPUs, and other work may run on it.")


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def progress(message):
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- PostgreSQL and Redis ------------------------------------------------------------


@contextlib.contextmanager
def postgres_server():
    """(admin URL, how statements are counted or None) of the PostgreSQL server to use.

    The throwaway server this starts gets pg_stat_statements preloaded (a restart);
    a server given in DATABASE_URL is used as it is: when it preloads the module,
    the extension is created in its admin database if missing.
    """
    if os.environ.get("DATABASE_URL"):
        url = os.environ["DATABASE_URL"]
        yield url, enable_statements(url)
        return
    directory = scratch_dir("bench-postgres-")
    server = EmbeddedPostgres(directory)
    os.environ["DATABASE_URL"] = server.url  # tests.servers creates the nodes' databases there
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        server._restart()  # the same restart EmbeddedPostgres does for max_connections
        yield server.url, enable_statements(server.url)
    finally:
        del os.environ["DATABASE_URL"]
        server.stop()
        remove(directory)


def enable_statements(url):
    """A description of pg_stat_statements when it can be read from `url`'s database, else None."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            if "pg_stat_statements" not in conn.execute("SHOW shared_preload_libraries").fetchone()[0]:
                return None
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()
            track, utility = (conn.execute(f"SHOW pg_stat_statements.{name}").fetchone()[0]
                              for name in ("track", "track_utility"))
            return f"preloaded (track={track}, track_utility={utility})"
    except psycopg.Error:
        return None


@contextlib.contextmanager
def redis_server():
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    directory = scratch_dir("bench-redis-")
    server = EmbeddedRedis(directory)
    os.environ["REDIS_URL"] = server.url  # the nodes inherit it
    try:
        yield server.url
    finally:
        del os.environ["REDIS_URL"]
        server.stop()
        remove(directory)


def drop_database(admin_url, database_url):
    name = urlparse(database_url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def kill_new_children(before):
    """Kill processes of ours started since `before` (a set of pids) and still running: those
    of a node whose start failed half-way, which nobody else would stop."""
    for child in psutil.Process().children(recursive=True):
        if child.pid not in before:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def own_children():
    return {child.pid for child in psutil.Process().children(recursive=True)}


# --- the data ---------------------------------------------------------------------


class Data:
    """The measured instances (bytes, and the same as files for storescu), warm-up sets and
    the round-trip set: all with distinct UIDs."""

    def __init__(self, args, work_dir):
        self.args = args
        self.work_dir = work_dir
        self.bodies = instances("measure", args.instances, args.studies)
        self.kilobytes = sum(map(len, self.bodies)) / len(self.bodies) / 1000
        per_study = max(1, args.instances // args.studies)
        self.roundtrip_studies = max(1, args.roundtrip_instances // per_study)
        self.roundtrip = {path: instances(f"roundtrip-{path}", args.roundtrip_instances, self.roundtrip_studies)
                          for path in ("REST", "C-STORE")}
        self._files = {}

    def warmup(self, index):
        """The warm-up instances of node (or server) `index`: distinct from every other set."""
        return instances(f"warmup-{index}", self.args.warmup, 1)

    def files(self, name, bodies):
        """`bodies` written as files once (for storescu)."""
        if name not in self._files:
            directory = self.work_dir / name
            directory.mkdir()
            paths = []
            for i, body in enumerate(bodies):
                path = directory / f"{i:06d}.dcm"
                path.write_bytes(body)
                paths.append(path)
            self._files[name] = paths
        return self._files[name]


def instances(purpose, count, studies):
    """`count` distinct CT instances over `studies` studies (two per patient), one series each;
    instance i goes to study i mod `studies`, so consecutive requests hit different studies."""
    files = []
    for i in range(count):
        study = i % studies
        study_uid = uid("bench-cluster", purpose, study)
        series_uid = uid(study_uid, "series")
        files.append(make_instance(
            patient_id=f"CLUSTER-{purpose}-{study // 2}", study_uid=study_uid, series_uid=series_uid,
            sop_uid=uid(series_uid, i), instance_number=i // studies + 1, rows=SIDE, columns=SIDE,
        ))
    return files


# --- pacsweb clusters ------------------------------------------------------------------


@dataclass
class Node:
    name: str
    url: str
    server: servers.Server
    listener: servers.Listener | None = None

    def log(self):
        text = self.server.output()
        if self.listener is not None:
            text += f"\n--- listener of {self.name} ---\n{self.listener.output()}"
        return text

    def replays(self):
        return sum(1 for line in self.log().splitlines() if REPLAY.search(line))


@contextlib.contextmanager
def pacsweb_cluster(count, args, postgres_url, listeners=False):
    """`count` fresh nodes of one new cluster (and a listener process each when asked)."""
    directory = scratch_dir("bench-cluster-")
    before = own_children()
    nodes = []
    first = None
    try:
        for i in range(1, count + 1):
            server = servers.Server(directory / f"node{i}", database="postgres", workers=1, threads=args.threads,
                                    join=first, PACS_NODE_NAME=f"node{i}")
            first = first or server
            nodes.append(Node(f"node{i}", server.url, server))
        if listeners:
            for node in nodes:
                node.listener = servers.Listener(node.server)
        yield nodes
    finally:
        for node in reversed(nodes):
            if node.listener is not None:
                node.listener.stop()
            node.server.stop()
        kill_new_children(before)
        if first is not None:
            drop_database(postgres_url, first.database_url)
        remove(directory)


def statistics(url, auth_header):
    """GET /statistics as a dict, or None when it failed."""
    try:
        status, answer = servers.request_json(url + "/statistics", auth=auth_header, timeout=REQUEST_TIMEOUT)
    except (OSError, ValueError):
        return None
    return answer if status == 200 else None


# --- sending -----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the throughput table."""

    product: str
    protocol: str
    count: int  # nodes or servers
    round: int
    elapsed: float = 0.0
    latencies: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # failed requests (measured) per node
    warmup_failed: int = 0
    stored: list = field(default_factory=list)  # CountInstances through each node (None: /statistics failed)
    expected: int = 0  # instances sent
    acknowledged: int = 0  # instances whose store was answered with success
    files: int | None = None  # files in the shared storage directory
    replays: int | None = None  # transactions pacsweb replayed after a conflict
    requests: list = field(default_factory=list)  # measured stores sent to each node
    note: str | None = None  # what the server's log says of its handling of conflicts


def post_all(targets, bodies, clients, keep_alive=True):
    """POST `bodies` from `clients` threads, thread i to targets[i % len(targets)] (each an
    (url, auth_header) pair), taking from one shared queue; (elapsed, latencies, errors per target)."""
    work = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    latencies = []
    errors = [[] for _ in targets]  # list.append is atomic: the threads share them
    sent = [[] for _ in targets]

    def client(index):
        url, auth_header = targets[index % len(targets)]
        address = urlparse(url)
        conn = http.client.HTTPConnection(address.hostname, address.port, timeout=REQUEST_TIMEOUT)
        try:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter()
                error = ingest.post(conn, auth_header, body)
                latencies.append(time.perf_counter() - started)
                sent[index % len(targets)].append(1)
                if error:
                    errors[index % len(targets)].append(error)
                if not keep_alive:
                    conn.close()
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, errors, [len(s) for s in sent]


def warm_up_rest(targets, data, clients):
    """Each target's own warm-up instances over new connections (the first request a gunicorn
    worker serves pays its imports and the password hash); the number that failed."""
    failed = 0
    for index, target in enumerate(targets):
        _, _, errors, _ = post_all([target], data.warmup(index), min(clients, 4), keep_alive=False)
        failed += sum(map(len, errors))
    return failed


def measure_rest(row, targets, data, args, label):
    """Warm every target up, then POST the measured instances to them; fill `row`, return
    the failed requests' messages per target."""
    row.warmup_failed = warm_up_rest(targets, data, args.clients)
    progress(f"{label}: measuring")
    row.elapsed, row.latencies, errors, row.requests = post_all(targets, data.bodies, args.clients)
    row.failed = [len(e) for e in errors]
    row.expected = len(targets) * args.warmup + args.instances
    row.acknowledged = row.expected - row.warmup_failed - sum(row.failed)
    return errors


def run_pacsweb_rest(args, data, count, postgres_url, problems, round_=1):
    row = Row("pacsweb", "REST", count, round_)
    progress(f"round {round_}: pacsweb REST, {count} node(s): starting")
    with pacsweb_cluster(count, args, postgres_url) as nodes:
        errors = measure_rest(row, [(node.url, servers.auth_header()) for node in nodes], data, args,
                              f"round {round_}: pacsweb REST, {count} node(s)")
        check_pacsweb(row, nodes, errors, problems)
    progress(f"round {round_}: pacsweb REST, {count} node(s): {args.instances / row.elapsed:.1f} inst/s")
    return row


def check_pacsweb(row, nodes, errors, problems):
    """Counts through every node, files in the shared storage, replays; note what is wrong."""
    row.stored = [(statistics(node.url, servers.auth_header()) or {}).get("CountInstances") for node in nodes]
    row.files = len(nodes[0].server.storage_files())
    row.replays = sum(node.replays() for node in nodes)
    wrong = [f"{row.failed[i] if i < len(row.failed) else 0} failed requests through {node.name}"
             for i, node in enumerate(nodes) if errors[i]]
    if row.warmup_failed:
        wrong.append(f"{row.warmup_failed} failed warm-up requests")
    wrong += [f"{node.name} counts {stored} instances, {row.expected} were sent"
              for node, stored in zip(nodes, row.stored) if stored != row.expected]
    if row.files != row.expected:
        wrong.append(f"{row.files} files in the storage directory for {row.expected} instances sent")
    if wrong:
        messages = [message for node_errors in errors for message in node_errors]
        problems.append(Problem(f"round {row.round}: pacsweb {row.protocol} with {len(nodes)} node(s)", wrong, messages,
                                {node.name: node.log() for node in nodes}, fatal=True))


def run_pacsweb_cstore(args, data, count, postgres_url, problems, round_=1):
    row = Row("pacsweb", "C-STORE", count, round_)
    paths = data.files("measure", data.bodies)
    progress(f"round {round_}: pacsweb C-STORE, {count} node(s): starting")
    with pacsweb_cluster(count, args, postgres_url, listeners=True) as nodes:
        run_dir = scratch_dir("bench-cluster-storescu-")
        try:
            warmups = [storescu(node.listener, data.files(f"warmup-{i}", data.warmup(i)), run_dir / f"warmup-{i}.log")
                       for i, node in enumerate(nodes)]
            outcomes = finish(warmups)
            row.warmup_failed = count * args.warmup - sum(ok for ok, _ in outcomes)
            errors = [[] for _ in nodes]
            for i, (_, error) in enumerate(outcomes):
                if error:
                    errors[i].append("warm-up " + error)
            progress(f"round {round_}: pacsweb C-STORE, {count} node(s): measuring")
            shares = [paths[i::args.associations] for i in range(args.associations)]
            started = time.perf_counter()
            processes = [storescu(nodes[i % count].listener, share, run_dir / f"store-{i}.log")
                         for i, share in enumerate(shares)]
            outcomes = finish(processes)
            row.elapsed = time.perf_counter() - started
            row.failed = [0] * count  # association i went to node i mod N
            row.requests = [0] * count
            for i, (ok, error) in enumerate(outcomes):
                row.failed[i % count] += len(shares[i]) - ok
                row.requests[i % count] += len(shares[i])
                if error:
                    errors[i % count].append(error)
            row.expected = count * args.warmup + args.instances
            row.acknowledged = row.expected - row.warmup_failed - sum(row.failed)
            check_pacsweb(row, nodes, errors, problems)
        finally:
            remove(run_dir)
    progress(f"round {round_}: pacsweb C-STORE, {count} node(s): {args.instances / row.elapsed:.1f} inst/s")
    return row


def storescu(listener, paths, log_path):
    """A started storescu sending `paths` over one association, verbose (one line per response)."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [STORESCU, "-v", "-aet", CALLING_AET, "-aec", listener.ae_title, "127.0.0.1", str(listener.port),
             *map(str, paths)],
            env=DCMTK_ENV, stdout=log, stderr=subprocess.STDOUT)
    return process, log_path


def finish(processes):
    """Wait for storescu processes; per process (stores answered Success, None or what went wrong).
    DCMTK's storescu exits with 0 after a failed store too: its log tells."""
    deadline = time.monotonic() + STORE_TIMEOUT
    outcomes = []
    for process, log_path in processes:
        try:
            code = process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        text = log_path.read_text(errors="replace")
        ok = text.count("Received Store Response (Success)")
        bad = [line for line in text.splitlines() if line.startswith(("E:", "F:", "W:"))
               or ("Received Store Response" in line and "(Success)" not in line)]
        outcomes.append((ok, f"storescu exited with {code}: " + " | ".join(bad[:5]) if code or bad else None))
    return outcomes


# --- Orthanc ------------------------------------------------------------------------


@contextlib.contextmanager
def orthanc_servers(count, postgres_url):
    """`count` Orthanc servers on one fresh PostgreSQL index database and one storage directory."""
    name = "orthanc_shared_" + os.urandom(6).hex()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
        # The URL may name the server by a socket directory: libpq's resolved values are what the plugin needs.
        host, port, user, password = conn.info.host, conn.info.port, conn.info.user, conn.info.password
    index = {"EnableIndex": True, "EnableStorage": False, "Host": host, "Port": int(port), "Database": name,
             "Username": user, "Password": password or "", "Lock": False}
    storage = scratch_dir("bench-orthanc-storage-")
    config = {"PostgreSQL": index, "SaveJobs": False, "StorageDirectory": str(storage)}
    before = own_children()
    try:
        with contextlib.ExitStack() as stack:
            # kind="sqlite" keeps OrthancServer from creating a database of its own; the plugin,
            # loaded explicitly with EnableIndex, replaces the SQLite index.
            yield [stack.enter_context(orthanc.OrthancServer("sqlite", config=config,
                                                             plugins=[orthanc.POSTGRESQL_INDEX_PLUGIN]))
                   for _ in range(count)], storage
    finally:
        kill_new_children(before)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        remove(storage)


def run_orthanc_rest(args, data, count, postgres_url, problems, round_=1):
    row = Row("orthanc", "REST", count, round_)
    progress(f"round {round_}: Orthanc REST, {count} server(s): starting")
    with orthanc_servers(count, postgres_url) as (orthancs, storage):
        errors = measure_rest(row, [(server.url, server.auth_header) for server in orthancs], data, args,
                              f"round {round_}: Orthanc REST, {count} server(s)")
        row.stored = [(statistics(server.url, server.auth_header) or {}).get("CountInstances")
                      for server in orthancs]
        # "The index plugin will use 1 connection(s) to the database, and will retry up to 10 time(s) in
        # the case of a collision": how the plugin meets a concurrent writer.
        row.note = next((line.split("] ", 1)[-1] for line in orthancs[0].log().splitlines()
                         if "retry up to" in line), None)
        row.files = sum(1 for p in storage.rglob("*") if p.is_file())
        wrong = []
        if row.warmup_failed or any(row.failed):
            wrong.append(f"{row.warmup_failed} failed warm-up requests, failed requests per server: "
                         f"{'+'.join(map(str, row.failed))}")
        wrong += [f"server {i + 1} counts {stored} instances: {row.acknowledged} were acknowledged, "
                  f"{row.expected} sent" for i, stored in enumerate(row.stored) if stored != row.expected]
        if row.files != row.stored[0]:
            wrong.append(f"{row.files} files in the shared storage directory")
        if wrong:
            problems.append(Problem(f"round {round_}: Orthanc REST with {count} server(s) on one database", wrong,
                                    [m for e in errors for m in e],
                                    {f"orthanc{i + 1}": s.log() for i, s in enumerate(orthancs)}, fatal=False))
    progress(f"round {round_}: Orthanc REST, {count} server(s): {args.instances / row.elapsed:.1f} inst/s, "
             f"{sum(row.failed)} failed")
    return row


# --- the throughput report --------------------------------------------------------------

COLUMNS = ("target", "protocol", "nodes", "inst/s", "min-max", "p50 ms", "p95 ms", "per node", "failed", "replays",
           "stored", "files")
LINE = "{:<8} {:<8} {:>5} {:>7} {:>13} {:>6} {:>6} {:>12} {:>11} {:>7}  {:<9} {:<9}"


def report_throughput(args, rows):
    if not rows:
        return
    print(f"\ningest of {args.instances} instances ({SIDE}x{SIDE}) in {args.studies} studies, {args.rounds} round(s), "
          f"each on a fresh cluster; REST: {args.clients} client threads; C-STORE: {args.associations} storescu "
          "associations")
    print("inst/s = median of the rounds (min-max: slowest and fastest round); p50/p95 = latency of one POST over "
          "all rounds; per node = measured stores sent to each node (the clients of a faster node take more of "
          "the shared queue), summed over the rounds; failed = measured stores not answered with success, summed over the rounds, per node "
          "(warm-up failures in brackets); replays = pacsweb transactions replayed after a conflict, from its logs; "
          "stored = GET /statistics CountInstances through every node of every round, against the instances sent "
          "(warm-up included); files = files in the shared storage directory")
    print(LINE.format(*COLUMNS))
    groups = {}
    for row in rows:
        groups.setdefault((row.product, row.protocol, row.count), []).append(row)
    for (product, protocol, count), group in groups.items():
        rates = sorted(args.instances / row.elapsed for row in group)
        failed = "+".join(str(sum(row.failed[i] for row in group)) for i in range(count))
        warmup_failed = sum(row.warmup_failed for row in group)
        if warmup_failed:
            failed += f" ({warmup_failed})"
        latencies = sorted(latency for row in group for latency in row.latencies)
        p50, p95 = ((f"{percentile(latencies, p) * 1000:.0f}" for p in (50, 95)) if latencies else ("-", "-"))
        replays = "-" if group[0].replays is None else sum(row.replays for row in group)
        shares = "+".join(str(sum(row.requests[i] for row in group)) for i in range(count))
        print(LINE.format(product, protocol, count, f"{median(rates):.1f}", f"{rates[0]:.1f}-{rates[-1]:.1f}", p50,
                          p95, shares, failed, replays, agreement([(row.stored, row.expected) for row in group]),
                          agreement([([row.files], row.expected) for row in group])))
    for note in sorted({row.note for row in rows if row.note}):
        print(f"Orthanc's log: {note}")


def agreement(pairs):
    """"all =N" when every count of every round is what was expected, else each round's counts."""
    if all(count == expected for counts, expected in pairs for count in counts):
        return f"all ={pairs[0][1]}"
    return "; ".join(",".join("?" if c is None else str(c) for c in counts) + f"/{expected}"
                     for counts, expected in pairs)


def median(ordered):
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


# --- database round trips --------------------------------------------------------------


@dataclass
class Counters:
    at: float
    transactions: int
    statements: dict | None  # (queryid, userid, toplevel) -> (calls, query text)
    deallocations: int | None


def counters(admin_url, database, statements):
    with psycopg.connect(admin_url, autocommit=True) as conn:
        commits, rollbacks = conn.execute(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s", [database]).fetchone()
        calls = deallocations = None
        if statements:
            calls = {(queryid, userid, toplevel): (n, query) for queryid, userid, toplevel, n, query in conn.execute(
                "SELECT queryid, userid, toplevel, calls, query FROM pg_stat_statements "
                "WHERE toplevel AND dbid = (SELECT oid FROM pg_database WHERE datname = %s)", [database])}
            deallocations = conn.execute("SELECT dealloc FROM pg_stat_statements_info").fetchone()[0]
    return Counters(time.monotonic(), commits + rollbacks, calls, deallocations)


def statement_delta(before, after):
    """{query text: calls} between two snapshots."""
    delta = {}
    for key, (calls, query) in after.statements.items():
        n = calls - before.statements.get(key, (0, None))[0]
        if n:
            delta[query] = delta.get(query, 0) + n
    return delta


def run_roundtrips(args, data, postgres_url, statements):
    """Transactions (and statements) per instance stored one at a time, through REST and C-STORE."""
    n = args.roundtrip_instances
    print(f"\ndatabase round trips per stored instance: 1 node, {n} instances in {data.roundtrip_studies} studies "
          f"stored one at a time through each path (REST: 1 client, keep-alive; C-STORE: 1 storescu association), "
          f"the node's own activity (heartbeats) over {IDLE_WINDOW} s idle before each is subtracted")
    print("transactions = xact_commit + xact_rollback of the node's database; statements = calls in "
          "pg_stat_statements sent by the node (top level: not those of foreign-key triggers), each a round trip "
          "(BEGIN, COMMIT, SAVEPOINT included); REST requests include their HTTP Basic authentication")
    if not statements:
        print("statements: NOT COUNTED (pg_stat_statements is not preloaded by this PostgreSQL server)")
    problems = []
    results = []
    progress("round trips: starting one node")
    with pacsweb_cluster(1, args, postgres_url, listeners=True) as nodes:
        node = nodes[0]
        database = urlparse(node.server.database_url).path.lstrip("/")
        target = [(node.url, servers.auth_header())]
        warm_up_rest(target, data, 4)
        run_dir = scratch_dir("bench-cluster-roundtrip-")
        try:
            finish([storescu(node.listener, data.files("warmup-0", data.warmup(0)), run_dir / "warmup.log")])
            for path, bodies in data.roundtrip.items():  # each path its own patients, studies, instances
                progress(f"round trips: {path}: idle window")
                time.sleep(STATS_FLUSH)  # let what came before reach the statistics
                idle_start = counters(postgres_url, database, statements)
                time.sleep(IDLE_WINDOW)
                start = counters(postgres_url, database, statements)
                progress(f"round trips: {path}: storing {len(bodies)}")
                started = time.perf_counter()
                if path == "REST":
                    _, _, errors, _ = post_all(target, bodies, 1)
                    errors = errors[0]
                else:
                    paths = data.files("roundtrip", bodies)
                    [(ok, error)] = finish([storescu(node.listener, paths, run_dir / "roundtrip.log")])
                    errors = [error] if error else []
                    if ok != len(paths):
                        errors.append(f"{len(paths) - ok} stores not answered with Success")
                elapsed = time.perf_counter() - started
                time.sleep(STATS_FLUSH)
                end = counters(postgres_url, database, statements)
                results.append((path, len(bodies), elapsed, idle_start, start, end))
                if errors:
                    problems.append(Problem(f"round trips through {path}", [f"{len(errors)} failed"], errors,
                                            {node.name: node.log()}, fatal=True))
        finally:
            remove(run_dir)
    row = "{:<8} {:>9} {:>8} {:>10} {:>11} {:>12}"
    print(row.format("path", "instances", "seconds", "tx/inst", "stmts/inst", "background"))
    details = []
    for path, count, elapsed, idle_start, start, end in results:
        idle_seconds = start.at - idle_start.at
        window = end.at - start.at
        tx_rate = (start.transactions - idle_start.transactions) / idle_seconds
        transactions = (end.transactions - start.transactions - tx_rate * window) / count
        stmts, background = "-", f"{tx_rate:.2f} tx/s"
        if statements:
            idle = statement_delta(idle_start, start)
            rate = sum(idle.values()) / idle_seconds
            delta = statement_delta(start, end)
            stmts = f"{(sum(delta.values()) - rate * window) / count:.1f}"
            background += f", {rate:.2f} st/s"
            details.append((path, count, delta, {q: c / idle_seconds * window for q, c in idle.items()}))
            if end.deallocations != idle_start.deallocations:
                stmts += " (entries deallocated: undercount)"
        print(row.format(path, count, f"{elapsed:.1f}", f"{transactions:.2f}", stmts, background))
    for path, count, delta, idle in details:
        print(f"{path}: statements per instance, by kind (first word), background subtracted:")
        kinds = {}
        for query, calls in delta.items():
            kind = query.split(None, 1)[0].upper() if query.strip() else "?"
            kinds[kind] = kinds.get(kind, 0) + calls - idle.get(query, 0)
        print("  " + ", ".join(f"{kind} {calls / count:.2f}" for kind, calls in
                               sorted(kinds.items(), key=lambda item: -item[1]) if calls / count >= 0.005))
        frequent = sorted(((calls - idle.get(query, 0)) / count, query) for query, calls in delta.items())
        frequent = [(per, query) for per, query in reversed(frequent) if per >= 0.5]
        print(f"  the {len(frequent)} statements run at least every other instance (per instance, text cut):")
        for per, query in frequent:
            print(f"    {per:5.2f}  {' '.join(query.split())[:110]}")
    return problems


# --- problems ------------------------------------------------------------------------------


@dataclass
class Problem:
    label: str
    wrong: list  # what does not add up
    messages: list  # the failed requests' messages
    logs: dict  # name -> log text
    fatal: bool  # pacsweb's problems fail the run; Orthanc's are the measurement


def report_problems(problems):
    failed = False
    for problem in problems:
        failed |= problem.fatal
        print(f"\n--- {problem.label}: {'; '.join(problem.wrong)}")
        for message in sorted(set(problem.messages), key=problem.messages.count, reverse=True)[:8]:
            print(f"  {problem.messages.count(message)} x {message[:300]}")
        for name, log in problem.logs.items():
            interesting = [line for line in log.splitlines()
                           if re.search(r"error|exception|traceback|fail|warn|E:|W:", line, re.IGNORECASE)]
            if interesting:
                print(f"  {name}: {len(interesting)} log lines of errors/warnings, the first 6:")
                for line in interesting[:6]:
                    print("    " + line[:300])
    if not problems:
        print("\nchecks: every store succeeded, every count through every node (or Orthanc) of every round equals "
              "what was sent, one file per instance")
    elif not failed:
        print("\nchecks: every pacsweb store succeeded and every pacsweb count is right; the problems above are "
              "Orthanc's")
    return failed


if __name__ == "__main__":
    sys.exit(main())
