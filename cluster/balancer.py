"""HAProxy in front of the nodes of a cluster: the configuration and the process.

HTTP is balanced per request; DICOM per association and HL7 per connection, in
TCP mode. All three check a node through its /readyz, so a draining node stops
getting new requests, associations and RIS connections while it finishes the
running ones.
"""

import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    name: str
    host: str
    http_port: int
    dicom_port: int
    hl7_port: int | None = None


def config(backends, http_port, dicom_port, hl7_port=None, bind="127.0.0.1", check_interval_ms=500):
    """The text of an HAProxy configuration for these nodes (an HL7 frontend when
    `hl7_port` is given)."""
    http_servers = "\n".join(
        f"    server {b.name} {b.host}:{b.http_port} check inter {check_interval_ms} fall 2 rise 2"
        for b in backends)
    dicom_servers = "\n".join(
        f"    server {b.name} {b.host}:{b.dicom_port} check port {b.http_port} inter {check_interval_ms} fall 2 rise 2"
        for b in backends)
    hl7 = ""
    if hl7_port is not None:
        hl7_servers = "\n".join(
            f"    server {b.name} {b.host}:{b.hl7_port} check port {b.http_port} "
            f"inter {check_interval_ms} fall 2 rise 2"
            for b in backends)
        hl7 = f"""
frontend hl7
    mode tcp
    bind {bind}:{hl7_port}
    default_backend nodes_hl7

backend nodes_hl7
    mode tcp
    # A RIS holds its MLLP connection open and sends message after message on it:
    # balance the connections; every node answers every message alike.
    balance leastconn
{hl7_servers}
"""
    return f"""global
    maxconn 4096

defaults
    timeout connect 5s
    # Large uploads and downloads stream for minutes; slow modalities pause.
    timeout client 1h
    timeout server 1h
    timeout check 5s
    # A node that refuses a connection (stopping) gets the request replayed on
    # another: the request was not sent, replaying it is safe.
    retries 3
    option redispatch
    option httpchk GET /readyz
    http-check expect status 200

frontend http
    mode http
    bind {bind}:{http_port}
    # A request head must arrive whole within 10 s (the nodes' PACS_HTTP_HEADER_TIMEOUT):
    # clients trickling headers are held here, cheaply, never passed to a node.
    timeout http-request 10s
    default_backend nodes_http

backend nodes_http
    mode http
    balance leastconn
    # A fresh server connection per request: no idle connection to a node that
    # is being stopped is ever reused.
    option http-server-close
    retry-on conn-failure empty-response
{http_servers}

frontend dicom
    mode tcp
    bind {bind}:{dicom_port}
    # A node is given an association only once its whole A-ASSOCIATE-RQ has arrived
    # (the PDU's 4-byte length at offset 2, PS3.8 9.3.2), within 10 s: associations
    # trickled byte by byte wait here, where they cost no node a slot.
    tcp-request inspect-delay 10s
    tcp-request content accept if {{ req.payload_lv(2,4) -m found }}
    tcp-request content reject
    default_backend nodes_dicom

backend nodes_dicom
    mode tcp
    balance leastconn
{dicom_servers}
{hl7}"""


def executable():
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def ensure_installed():
    """Install Debian's haproxy when it is missing and we may (root)."""
    if executable() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-q", "haproxy"], env=env, stdout=subprocess.DEVNULL, check=False)


def start(config_path, log):
    """Run HAProxy in the foreground on the configuration file; the Popen."""
    binary = executable()
    if binary is None:
        raise FileNotFoundError("HAProxy is not installed (Debian: apt-get install haproxy)")
    subprocess.run([binary, "-c", "-q", "-f", str(config_path)], check=True)
    return subprocess.Popen([binary, "-db", "-f", str(config_path)], stdout=log, stderr=subprocess.STDOUT)
