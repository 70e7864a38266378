"""Floors: the least a read and a store can cost in pacsweb's stack, beside Orthanc's whole
read and store, in one run.

    .venv/bin/python -m benchmarks.floor                      # 1,000 stores, 2,000 reads
    .venv/bin/python -m benchmarks.floor -n 300 --requests 500

Two applications here answer every request with one fixed JSON body, whatever its path
and method (a POST's body is read first), served by gunicorn as pacsweb runs it
(deploy/gunicorn.conf.py: its worker class, threads and access log; 1 process of 4
threads):
- `application`: plain WSGI, no Django;
- `django_application()`: Django's handler as pacsweb runs it (pacsweb/handler.py, its
  settings and signal receivers) with no middleware and one route.

The run measures, with one client over one keep-alive connection:
1. reads: --requests `GET`s of each floor, of pacsweb's `GET /studies/{id}` (SQLite) and
   of Orthanc's (SQLite): p50 and the server's CPU per request (its process tree's user +
   system time from /proc, before and after);
2. stores: -n small instances (benchmarks.ingest's 64x64 CT) posted to each floor, to
   pacsweb's `POST /instances` (SQLite) and to Orthanc's (SQLite), after 50 unmeasured
   ones: the same figures;
3. pacsweb's store without its web stack: `archive.ingest.store` of the same -n instances
   called in a process of its own (Django set up, an embedded database of its own, the
   audit row in the store's transaction as over REST), its CPU (time.process_time)
   per instance.

Then it prints what follows for issue 16's aims: the least pacsweb's `GET /studies/{id}`
can answer in (Django's floor) against twice Orthanc's p50, and the least a store can
cost (Django's floor for a POST plus the store without its web stack) against Orthanc's
whole store. Exits 1 when a request failed or an answer was wrong.
"""

import argparse
import contextlib
import http.client
import io
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pydicom
from django.http import HttpResponse
from django.urls import re_path

from archive.identifiers import study_public_id
from benchmarks import ingest, rest

BODY = b'{"ID": "floor", "MainDicomTags": {}}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
WARMUP = 50


def application(environ, start_response):
    """Every path, /healthz too (what tests.servers waits for)."""
    stream = environ["wsgi.input"]
    while stream.read(65536):
        pass
    start_response("200 OK", HEADERS)
    return [BODY]


def django_application():
    """Django's handler as pacsweb runs it, with pacsweb's settings less the middleware
    and the routes: a gunicorn app factory (`benchmarks.floor:django_application()`)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pacsweb.settings")
    from django.conf import settings

    settings.MIDDLEWARE = []
    settings.ROOT_URLCONF = __name__
    import django

    django.setup(set_prefix=False)
    from pacsweb.handler import Handler, drop_idle_receivers

    drop_idle_receivers()
    return Handler()


def fixed(request):
    request.body  # noqa: B018 (a POST's body is read, as a store reads it)
    return HttpResponse(BODY, content_type="application/json")


urlpatterns = [re_path(r"", fixed)]


def main():
    args = parse_args()
    if args.core:
        return core(Path(args.core), args.n)
    print(f"command: {shlex.join([os.path.relpath(sys.executable), '-m', 'benchmarks.floor', *sys.argv[1:]])}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: {os.cpu_count()} CPUs, {ingest.cpu_model()}, load average at the start: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"software: Python {sys.version.split()[0]}, pacsweb {ingest.git_revision()}", flush=True)
    files = ingest.instances("small", args.n, "measure")
    warmup = ingest.instances("small", WARMUP, "warmup")
    rows, errors = [], []
    for label, app in (("gunicorn, no Django", "benchmarks.floor:application"),
                       ("Django's handler, no middleware", "benchmarks.floor:django_application()")):
        with served(app, args.threads) as target:
            rows.append(measure(target, "floor: " + label, files, warmup, [("/floor", None)] * args.requests,
                                errors, check_store=False))
    for name in ("pacsweb-sqlite", "orthanc-sqlite"):
        with ingest.start(name, argparse.Namespace(workers=1, threads=args.threads), None) as target:
            rows.append(measure(target, name, files, warmup, None, errors, check_store=True, requests=args.requests))
    core_ms = core_cost(args.n)
    report(rows, core_ms, args)
    for error in sorted(set(errors))[:20]:
        print(f"FAILED: {errors.count(error)} x {error}")
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if errors else 0


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="small instances stored per server (default 1000)")
    parser.add_argument("--requests", type=int, default=2000, help="GETs per server (default 2000)")
    parser.add_argument("--threads", type=int, default=4, help="threads of pacsweb's one web process (default 4)")
    parser.add_argument("--core", metavar="DIR", help=argparse.SUPPRESS)  # the store without its web stack
    return parser.parse_args()


@contextlib.contextmanager
def served(app, threads):
    """One of the applications above under gunicorn as pacsweb runs it, 1 process: its
    benchmarks.rest.Target."""
    directory = rest.scratch_dir("bench-floor-")
    port = rest.servers.free_port()
    log = open(Path(directory) / "floor.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", app, "--config", str(rest.servers.GUNICORN_CONF),
         "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", str(threads), "--no-control-socket"],
        cwd=rest.servers.REPO, env=without_database(rest.servers.base_env(directory)),
        stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        rest.servers.wait_until_up(url, process)
        yield rest.Target(url, rest.servers.auth_header(), lambda: (Path(directory) / "floor.log").read_text(),
                          process.pid)
    finally:
        process.terminate()
        process.wait(15)
        log.close()
        rest.remove(directory)


def without_database(env):
    """The embedded database in the process's own folder (DATABASE_URL may name the test run's PostgreSQL)."""
    env.pop("DATABASE_URL", None)
    return env


def measure(target, label, files, warmup, gets, errors, check_store, requests=0):
    """Stores then reads on one keep-alive connection: (label, store figures, read figures)."""
    conn = connection(target)
    for body in warmup:
        note(errors, label, post(conn, target, body, check_store))
    stores = timed(target, [lambda conn, body=body: post(conn, target, body, check_store) for body in files],
                   conn, errors, label)
    if gets is None:  # a server's own read: the study of the first instance stored
        count = ingest.count_instances(target)
        if count != WARMUP + len(files):
            errors.append(f"{label}: {count} instances stored, expected {WARMUP + len(files)}")
        gets = [(f"/studies/{study_id(files[0])}", study_check(files[0]))] * requests
    for path, check in gets[:WARMUP]:
        note(errors, label, get(conn, target, path, check))
    reads = timed(target, [lambda conn, path=path, check=check: get(conn, target, path, check) for path, check in gets],
                  conn, errors, label)
    conn.close()
    print(f"{label}: store p50 {stores[0]:.3f} ms, CPU {stores[1]:.3f} ms; "
          f"read p50 {reads[0]:.3f} ms, CPU {reads[1]:.3f} ms", flush=True)
    return label, stores, reads


def timed(target, calls, conn, errors, label):
    """(p50 ms, server CPU ms per call) of `calls`, one after the other."""
    latencies = []
    before = ingest.cpu_seconds(target.pid)
    for call in calls:
        started = time.perf_counter()
        note(errors, label, call(conn))
        latencies.append(time.perf_counter() - started)
    cpu = ingest.cpu_seconds(target.pid) - before
    latencies.sort()
    return latencies[len(latencies) // 2] * 1000, cpu / len(calls) * 1000


def note(errors, label, error):
    if error:
        errors.append(f"{label}: {error}")


def connection(target):
    address = urlparse(target.url)
    return http.client.HTTPConnection(address.hostname, address.port, timeout=60)


def post(conn, target, body, check_store):
    if check_store:
        return ingest.post(conn, target.auth_header, body)
    return exchange(conn, "POST", "/instances", target, body, lambda answer: None if answer == BODY else answer[:100])


def get(conn, target, path, check):
    return exchange(conn, "GET", path, target, None,
                    check or (lambda answer: None if answer == BODY else answer[:100]))


def exchange(conn, method, path, target, body, check):
    try:
        headers = {"Authorization": target.auth_header}
        if body is not None:
            headers["Content-Type"] = "application/dicom"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
    except (OSError, http.client.HTTPException) as error:
        conn.close()
        return f"{method} {path}: {type(error).__name__}: {error}"
    if response.status != 200:
        return f"{method} {path}: HTTP {response.status}: {answer[:200]!r}"
    problem = check(answer)
    return f"{method} {path}: {problem!r}" if problem else None


def study_id(body):
    dataset = pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True)
    return study_public_id(dataset.PatientID, dataset.StudyInstanceUID)


def study_check(body):
    expected = study_id(body)

    def check(answer):
        found = json.loads(answer).get("ID")
        return None if found == expected else f"study {found!r}, expected {expected!r}"

    return check


def core_cost(count):
    """CPU ms per instance of archive.ingest.store, in a process of its own on a fresh embedded database."""
    directory = rest.scratch_dir("bench-core-")
    try:
        env = without_database(rest.servers.base_env(directory))
        rest.servers.manage("migrate", "--noinput", env=env)
        env["DJANGO_SETTINGS_MODULE"] = "pacsweb.settings"
        answer = subprocess.run([sys.executable, "-m", "benchmarks.floor", "--core", directory, "-n", str(count)],
                                cwd=rest.servers.REPO, env=env, capture_output=True, text=True, check=True)
        figure = json.loads(answer.stdout.strip().splitlines()[-1])
    finally:
        rest.remove(directory)
    print(f"pacsweb's store without its web stack: CPU {figure['cpu_ms']:.3f} ms, "
          f"{figure['stored']} of {count} stored", flush=True)
    return figure["cpu_ms"]


def core(directory, count):
    """In the --core process: store the run's instances straight through archive.ingest."""
    import django

    django.setup()
    from archive import ingest as archive_ingest

    origin = archive_ingest.Origin.http("127.0.0.1", "admin", actor_kind="user", actor="admin", path="/instances")
    for body in ingest.instances("small", WARMUP, "warmup"):
        archive_ingest.store(body, origin)
    files = ingest.instances("small", count, "measure")
    before = time.process_time()
    results = [archive_ingest.store(body, origin) for body in files]
    cpu = time.process_time() - before
    stored = sum(result.status == archive_ingest.SUCCESS for result in results)
    print(json.dumps({"cpu_ms": cpu / count * 1000, "stored": stored}))
    return 0 if stored == count else 1


def report(rows, core_ms, args):
    print(f"\none client, one keep-alive connection; {args.n} small stores (after {WARMUP}), "
          f"{args.requests} GETs (after {WARMUP})")
    line = "{:<38} {:>13} {:>13} {:>12} {:>12}"
    print(line.format("", "store p50 ms", "store CPU ms", "GET p50 ms", "GET CPU ms"))
    figures = {}
    for label, (store_p50, store_cpu), (get_p50, get_cpu) in rows:
        figures[label] = (store_p50, store_cpu, get_p50, get_cpu)
        print(line.format(label, f"{store_p50:.3f}", f"{store_cpu:.3f}", f"{get_p50:.3f}", f"{get_cpu:.3f}"))
    print(line.format("pacsweb's store, no web stack (in-process)", "", f"{core_ms:.3f}", "", ""))
    django = figures["floor: Django's handler, no middleware"]
    orthanc = figures["orthanc-sqlite"]
    print(f"\nGET: Django's floor answers in {django[2]:.3f} ms (p50); twice Orthanc's GET /studies/{{id}} is "
          f"{2 * orthanc[2]:.3f} ms; pacsweb's GET /studies/{{id}} {figures['pacsweb-sqlite'][2]:.3f} ms")
    least = django[1] + core_ms
    print(f"store: Django's floor for a POST plus the store without its web stack is {least:.3f} ms of CPU; "
          f"Orthanc's whole store {orthanc[1]:.3f} ms ({least / orthanc[1]:.2f}x); "
          f"pacsweb's whole store {figures['pacsweb-sqlite'][1]:.3f} ms")


if __name__ == "__main__":
    sys.exit(main())
