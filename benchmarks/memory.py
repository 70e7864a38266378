"""Memory benchmark: the proportional memory (PSS) of a node, idle and under ingest, beside Orthanc's.

    .venv/bin/python -m benchmarks.memory                  # 300 instances of 0.5 MB, 4 clients
    .venv/bin/python -m benchmarks.memory -n 100 --size small --concurrency 1 4

pacsweb is started as `make run` starts it (`manage.py run`: SQLite, the embedded
Redis, the default processes: web server and its workers, DICOM listeners, HL7
listener, job workers, housekeeper), Orthanc 1.10 with its SQLite index (one
process). For each: PSS per process and the total once idle after the start, the
highest total sampled every 0.5 s while the ingest benchmark's clients store N
instances (benchmarks/ingest.py: same instances, same clients, POST /instances),
and per process again once the ingest is over. PSS counts a page shared by k
processes as 1/k in each, so the total is what the node costs the machine;
MB = 2^20 bytes here, as in `ps` and `top`.
"""

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

from benchmarks.ingest import SIZES, Target, cpu_model, cpu_seconds, git_revision, instances, memory_gb, store_all
from tests import memory, orthanc, servers
from tests.services import remove, scratch_dir
from tests.waiting import wait_for

SAMPLE_EVERY = 0.5
SETTLE = 5  # seconds after the start (or the ingest) before "idle" is read


def main():
    args = parse_args()
    command = shlex.join([os.path.relpath(sys.executable), "-m", "benchmarks.memory", *sys.argv[1:]])
    print(f"command: {command}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, {memory_gb():.1f} GB RAM, "
          f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"software: pacsweb {git_revision()}, Orthanc {orthanc.version()}")
    print(f"ingest: -n {args.n} {args.size} instances ({SIZES[args.size]}x{SIZES[args.size]} CT) per concurrency "
          f"{args.concurrency}, POST /instances; PSS in MB (2^20 bytes)\n")
    files = {c: instances(args.size, args.n, f"memory-{c}") for c in args.concurrency}
    totals = {}
    for name, start in (("pacsweb", pacsweb_node), ("orthanc", orthanc_server)):
        if name not in args.targets:
            continue
        with start() as target:
            totals[name] = measure(name, target, files)
    print("summary (total PSS in MB)")
    print(f"{'target':<10} {'idle':>8} {'peak':>8} {'after':>8}")
    for name, (idle, peak, after) in totals.items():
        print(f"{name:<10} {idle / memory.MB:8.1f} {peak / memory.MB:8.1f} {after / memory.MB:8.1f}")
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=300, help="instances stored per concurrency (default 300)")
    parser.add_argument("--size", choices=list(SIZES), default="large")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[4])
    parser.add_argument("--targets", nargs="+", choices=["pacsweb", "orthanc"], default=["pacsweb", "orthanc"])
    return parser.parse_args()


def measure(name, target, files):
    """(idle total, peak total during the ingest, total after it) in bytes; prints the tables."""
    def processes():
        return memory.node_processes(target.pid, root_name="launcher" if name == "pacsweb" else "Orthanc")

    time.sleep(SETTLE)  # a settling delay before a reading, not a synchronisation
    idle = processes()
    print(f"{name}, idle after the start:\n{memory.describe(idle)}\n")
    peak = 0
    for concurrency, batch in files.items():
        samples = []
        done = threading.Event()

        def sample():
            while not done.wait(SAMPLE_EVERY):
                samples.append(sum(size for _, _, size in processes()))

        sampler = threading.Thread(target=sample)
        sampler.start()
        cpu = cpu_seconds(target.pid)
        started = time.perf_counter()
        latencies, errors = store_all(target, batch, concurrency)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(target.pid) - cpu
        done.set()
        sampler.join()
        peak = max([peak, *samples])
        print(f"{name}, {len(batch)} instances by {concurrency} clients in {elapsed:.1f} s "
              f"(server CPU {cpu * 1000 / len(batch):.1f} ms per instance), {len(errors)} errors; "
              f"highest total PSS sampled: {max(samples, default=0) / memory.MB:.1f} MB ({len(samples)} samples)")
        for error in errors[:3]:
            print(f"  {error}")
    time.sleep(SETTLE)
    after = processes()
    # A short ingest may end between two samples: what stays after it was there during it.
    peak = max(peak, sum(size for _, _, size in after))
    print(f"\n{name}, after the ingest:\n{memory.describe(after)}\n")
    return (sum(size for _, _, size in idle), peak, sum(size for _, _, size in after))


@contextlib.contextmanager
def pacsweb_node():
    """A node started as `make run` starts it, on loopback and free ports."""
    directory = scratch_dir("bench-memory-")
    port, dicom_port, hl7_port = servers.free_port(), servers.free_port(), servers.free_port()
    env = servers.base_env(directory / "data", PACS_HTTP_PORT=port, PACS_DICOM_PORT=dicom_port,
                           PACS_HL7_PORT=hl7_port)
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    log_path = directory / "run.log"
    log = open(log_path, "w+")
    launcher = subprocess.Popen([sys.executable, "manage.py", "run", "--bind", "127.0.0.1"], cwd=servers.REPO,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def banner():
            assert launcher.poll() is None, log_path.read_text()
            return "Stop with Ctrl-C" in log_path.read_text()

        wait_for(banner, timeout=120, what="the banner of manage.py run")
        yield Target(f"http://127.0.0.1:{port}", servers.auth_header(), log_path.read_text, launcher.pid)
    finally:
        os.killpg(launcher.pid, signal.SIGINT)
        launcher.wait(120)
        log.close()
        remove(directory)


@contextlib.contextmanager
def orthanc_server():
    with orthanc.OrthancServer("sqlite") as server:
        yield Target(server.url, server.auth_header, server.log, server.process.pid)


if __name__ == "__main__":
    sys.exit(main())
