"""The node registry: every process of every node says who and how it is.

A daemon thread per process writes its row every PACS_NODE_HEARTBEAT seconds
(one upsert), so GET /cluster/nodes on any node shows the whole cluster: which
processes run where, their memory, their open associations, the depth of the
queues, and a hash of their effective settings (two nodes configured apart show
different hashes). A node's draining flag lives beside it in the database.
"""

import hashlib
import json
import logging
import os
import socket
import threading

from django.conf import settings
from django.db import connection
from django.utils import timezone

from cluster.models import NodeProcess, NodeState
from archive import db

log = logging.getLogger("pacsweb.registry")

# Settings every node of one cluster must share; their hash shows drift.
SHARED_SETTINGS = ("DATABASE_URL_HASH", "REDIS_URL", "STORAGE_DIR", "QUEUE_PREFIX", "TX_ISOLATION", "TX_RETRIES",
                   "STABLE_AGE", "ARCHIVE_CACHE_SIZE", "ARCHIVE_TTL", "JOBS_HISTORY_SIZE", "JOB_HEARTBEAT_TIMEOUT",
                   "JOB_ATTEMPTS", "ZIP_LEVEL", "VERSION", "AE_TITLE", "DICOM_MAX_PDU", "DICOM_TIMEOUT",
                   # Balanced HL7 messages land on any node: all must read an order alike.
                   "HL7_FIELDS")


def settings_hash():
    values = {}
    for name in SHARED_SETTINGS:
        if name == "DATABASE_URL_HASH":
            database = settings.DATABASES["default"]
            values[name] = f"{database['ENGINE']}:{database.get('HOST')}:{database.get('PORT')}:{database['NAME']}"
        else:
            values[name] = str(getattr(settings, name, ""))
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def resident_memory():
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Heartbeat:
    """Writes this process's registry row until the process ends."""

    def __init__(self, kind, associations=None, queues=None):
        self.kind = kind
        self.associations = associations or (lambda: 0)
        self.queues = queues or (lambda: {})
        self.key = f"{settings.NODE_NAME}:{kind}:{socket.gethostname()}:{os.getpid()}"
        self.started = timezone.now()
        self.stop = threading.Event()

    def start(self):
        thread = threading.Thread(target=self._run, name=f"heartbeat-{self.kind}", daemon=True)
        thread.start()
        return self

    def beat(self):
        row = dict(
            node=settings.NODE_NAME, kind=self.kind, host=socket.gethostname(), pid=os.getpid(),
            url=settings.NODE_URL, dicom_port=settings.DICOM_PORT if self.kind == "dicom" else None,
            ae_title=settings.AE_TITLE, version=settings.VERSION, settings_hash=settings_hash(),
            started_at=self.started, last_seen=timezone.now(), rss=resident_memory(),
            associations=self.associations(), queues=self.queues(),
        )
        db.run(lambda: NodeProcess.objects.update_or_create(key=self.key, defaults=row))

    def _run(self):
        while True:
            try:
                self.beat()
            except Exception as error:  # the database may be away for a while: keep beating
                log.warning("registry heartbeat of %s not written: %s", self.key, error)
            finally:
                connection.close()
            if self.stop.wait(settings.NODE_HEARTBEAT):
                return


_started = {}


def start_heartbeat(kind, **callbacks):
    """Start this process's heartbeat once (a web process may call it per request)."""
    if kind not in _started:
        _started[kind] = Heartbeat(kind, **callbacks).start()
    return _started[kind]


def status(last_seen, now):
    age = (now - last_seen).total_seconds()
    if age <= 3 * settings.NODE_HEARTBEAT:
        return "up"
    if age <= 12 * settings.NODE_HEARTBEAT:
        return "stale"
    return "down"


def nodes():
    """The cluster as GET /cluster/nodes shows it: one entry per node name."""
    now = timezone.now()
    draining = dict(NodeState.objects.values_list("node", "draining"))
    out = {}
    for process in NodeProcess.objects.order_by("node", "kind", "started_at"):
        node = out.setdefault(process.node, {
            "Name": process.node, "Url": process.url, "DicomPort": None, "AETitle": process.ae_title,
            "Status": "down", "Draining": draining.get(process.node, False), "Version": process.version,
            "LastSeen": None, "Processes": [],
        })
        state = status(process.last_seen, now)
        if process.kind == "dicom" and state == "up":
            node["DicomPort"] = process.dicom_port
        elif process.kind == "dicom" and node["DicomPort"] is None:
            node["DicomPort"] = process.dicom_port
        if process.kind == "web" and state == "up":
            node["Url"] = process.url
        rank = {"up": 2, "stale": 1, "down": 0}
        if rank[state] > rank[node["Status"]]:
            node["Status"] = state
        if node["LastSeen"] is None or process.last_seen.isoformat() > node["LastSeen"]:
            node["LastSeen"] = process.last_seen.isoformat()
        node["Processes"].append({
            "Kind": process.kind, "Host": process.host, "Pid": process.pid, "Status": state,
            "Started": process.started_at.isoformat(), "LastSeen": process.last_seen.isoformat(),
            "RSS": process.rss, "Associations": process.associations, "Queues": process.queues,
            "Version": process.version, "SettingsHash": process.settings_hash,
        })
    return list(out.values())


def forget_dead():
    """Remove the rows of processes not seen for PACS_NODE_FORGET seconds; how many."""
    limit = timezone.now() - timezone.timedelta(seconds=settings.NODE_FORGET)
    removed, _ = NodeProcess.objects.filter(last_seen__lt=limit).delete()
    return removed


def is_draining(node=None):
    return NodeState.objects.filter(node=node or settings.NODE_NAME, draining=True).exists()


def set_draining(node, draining):
    def unit():
        NodeState.objects.update_or_create(node=node, defaults={"draining": draining, "changed_at": timezone.now()})
    db.run(unit)
