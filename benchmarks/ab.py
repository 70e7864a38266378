"""A/B: the server CPU of one request, for an earlier commit and this checkout, measured at once.

    .venv/bin/python -m benchmarks.ab --base d6a6f1d                        # GET /studies/{id} on SQLite
    .venv/bin/python -m benchmarks.ab --base HEAD~3 --request store --database postgres --rounds 30
    .venv/bin/python -m benchmarks.ab --base HEAD --base-env GUNICORN_CMD_ARGS=--http-parser=python

On a shared VM the CPU a request costs moves by 10-20 % from one minute to the next,
more than most single changes save; two runs one after the other cannot tell them
apart. Here both servers run side by side: the --base commit (checked out into a
temporary git worktree) and this checkout, each a gunicorn node of 1 worker x 4
threads on its own database. The client sends 100 requests to one, then 100 to the
other, for --rounds rounds (the order alternating), and sums each server's CPU
(user + system of its process tree, /proc/<pid>/stat) over its own rounds only, so
whatever else the machine does falls on both alike.

Requests: store (POST /instances of a distinct 9 kB CT each time), stow (the same
files, one per STOW-RS request), study (GET /studies/{id}), file
(GET /instances/{id}/file), qido (QIDO-RS by PatientID, 2 answers), metadata (WADO-RS
metadata of the first study stored: 25 of the prefill's 100 instances), system
(GET /system). Every answer must be 200.

Both databases are created by this checkout's migrations: compare commits whose
migrations are the same.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import time

from benchmarks import ingest
from tests import servers
from tests.services import remove, scratch_dir

BATCH = 100
PREFILL = 100
REQUESTS = ("store", "stow", "study", "file", "qido", "metadata", "system")
STOW_BOUNDARY = "ab-stow-boundary"


def main():
    args = parse_args()
    settings = "".join(f" with {name}={value}" for name, value in args.base_env)
    print(f"base {args.base} ({git('rev-parse', '--short', args.base)}{settings}) against this checkout "
          f"({ingest.git_revision()}); {args.request} on {args.database}, {args.rounds} rounds of {BATCH}; "
          f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    worktree = scratch_dir("bench-ab-base-")
    git("worktree", "add", "--detach", "--force", worktree, args.base)
    try:
        with ingest.postgres_server([f"pacsweb-{args.database}"]):
            totals = measure(args, {"base": worktree, "this": str(servers.REPO)})
    finally:
        git("worktree", "remove", "--force", worktree)
        remove(worktree)
    for name, (seconds, count) in totals.items():
        print(f"{name}: {seconds / count * 1000:.3f} ms CPU per request over {count}")
    print(f"this / base = {totals['this'][0] / totals['base'][0]:.3f}; load average at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare this checkout with")
    parser.add_argument("--request", choices=REQUESTS, default="study")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=20, help=f"rounds of {BATCH} requests per server (default 20)")
    parser.add_argument("--base-env", action="append", default=[], metavar="NAME=VALUE", type=_setting,
                        help="an environment variable of the base's server only (to compare a setting, "
                             "with --base HEAD)")
    return parser.parse_args()


def _setting(text):
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def git(*args):
    return subprocess.run(["git", *args], cwd=servers.REPO, check=True, capture_output=True, text=True).stdout.strip()


def start(repo, database, extra_env=()):
    """A node serving the code of `repo` (a Server started, then restarted from that tree)."""
    server = servers.Server(scratch_dir("bench-ab-"), database=database, workers=1, threads=4)
    server.stop()
    server.command[server.command.index("--config") + 1] = os.path.join(repo, "deploy", "gunicorn.conf.py")
    server.log = open(server.data_dir / "server.log", "a")
    env = dict(server.env, PYTHONPATH=repo, **dict(extra_env))
    server.process = subprocess.Popen(server.command, env=env, cwd=repo,
                                      stdout=server.log, stderr=subprocess.STDOUT)
    servers.wait_until_up(server.url, server.process)
    return server


class Client:
    def __init__(self, server, files):
        self.server = server
        self.files = iter(files)
        self.headers = {"Authorization": servers.auth_header()}
        self.reconnect()

    def reconnect(self):
        """A new keep-alive connection: one per batch, as the server closes one left idle
        for its keep-alive time (5 s) while the other server is measured or started."""
        self.conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)

    def send(self, method, path, body=None, accept="application/json", content_type=None):
        headers = {**self.headers, "Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"{method} {path}: HTTP {response.status}: {data[:200]!r}")
        return data

    def prepare(self):
        for _ in range(PREFILL):
            self.store()
        study = json.loads(self.send("GET", "/studies"))[0]
        instance = json.loads(self.send("GET", f"/studies/{study}/instances"))[0]["ID"]
        uid = json.loads(self.send("GET", f"/studies/{study}"))["MainDicomTags"]["StudyInstanceUID"]
        self.paths = {"study": f"/studies/{study}", "file": f"/instances/{instance}/file", "system": "/system",
                      "metadata": f"/dicom-web/studies/{uid}/metadata"}

    def store(self):
        self.send("POST", "/instances", next(self.files))

    def stow(self):
        part = f"--{STOW_BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        self.send("POST", "/dicom-web/studies", part + next(self.files) + f"\r\n--{STOW_BOUNDARY}--\r\n".encode(),
                  accept="application/dicom+json",
                  content_type=f'multipart/related; type="application/dicom"; boundary={STOW_BOUNDARY}')

    def one(self, request):
        if request == "store":
            self.store()
        elif request == "stow":
            self.stow()
        elif request == "qido":
            self.send("GET", "/dicom-web/studies?PatientID=BENCH-1", accept="application/dicom+json")
        elif request == "metadata":
            self.send("GET", self.paths[request], accept="application/dicom+json")
        else:
            self.send("GET", self.paths[request])


def measure(args, repos):
    per_server = PREFILL + args.rounds * BATCH
    files = ingest.instances("small", 2 * per_server, "measure")
    made, clients = {}, {}
    try:
        for name, repo in repos.items():
            made[name] = start(repo, args.database, args.base_env if name == "base" else ())
        for index, name in enumerate(made):
            clients[name] = Client(made[name], files[index * per_server:(index + 1) * per_server])
            clients[name].prepare()
        totals = {name: [0.0, 0] for name in made}
        names = list(made)
        for round_number in range(args.rounds):
            for name in (names if round_number % 2 == 0 else reversed(names)):
                clients[name].reconnect()
                before = ingest.cpu_seconds(made[name].process.pid)
                for _ in range(BATCH):
                    clients[name].one(args.request)
                totals[name][0] += ingest.cpu_seconds(made[name].process.pid) - before
                totals[name][1] += BATCH
        return totals
    finally:
        for server in made.values():
            server.stop()
            remove(server.data_dir)


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"{time.monotonic() - started:.0f} s")
