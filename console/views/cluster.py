"""The cluster page: every node as the registry shows it, with warnings, and draining."""

import datetime

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone

from archive.models import FileDeletion
from cluster import registry
from cluster.models import NodeProcess, NodeState
from archive.roles import ADMIN
from console.access import audit, console_view, is_htmx

# Files waiting in the deletion outbox beyond this many: the workers are not keeping up.
OUTBOX_WARNING = 1000


def overview():
    """The nodes (registry.nodes()) with their totals, and the cluster's warnings."""
    now = timezone.now()
    nodes = registry.nodes()
    hashes = {}
    for node in nodes:
        live = [p for p in node["Processes"] if p["Status"] == "up"] or node["Processes"]
        node["rss"] = sum(p["RSS"] for p in live)
        node["associations"] = sum(p["Associations"] for p in live)
        queues = {}
        for process in live:
            for name, depth in (process["Queues"] or {}).items():
                queues[name] = max(queues.get(name, 0), depth)
        node["queues"] = sorted((name.rsplit("-", 1)[-1], depth) for name, depth in queues.items())
        starts = [datetime.datetime.fromisoformat(p["Started"]) for p in live]
        node["uptime"] = (now - min(starts)).total_seconds() if starts and node["Status"] != "down" else None
        node["kinds"] = sorted({p["Kind"] for p in live})
        node["running"] = sum(1 for p in node["Processes"] if p["Status"] == "up")
        node["gone"] = len(node["Processes"]) - node["running"]
        node["hashes"] = sorted({p["SettingsHash"] for p in live})
        last_seen = datetime.datetime.fromisoformat(node["LastSeen"]) if node["LastSeen"] else None
        node["last_seen_age"] = (now - last_seen).total_seconds() if last_seen else None
        if node["Status"] == "up":
            for value in node["hashes"]:
                hashes.setdefault(value, []).append(node["Name"])
    warnings = []
    for node in nodes:
        if node["Status"] != "up":
            age = node["last_seen_age"]
            warnings.append(f"Node {node['Name']} is {node['Status']}: last heard from "
                            f"{int(age) if age is not None else '?'} s ago.")
        if node["Draining"]:
            warnings.append(f"Node {node['Name']} is draining: it takes no new requests or jobs.")
    if len(hashes) > 1:
        groups = "; ".join(f"{', '.join(sorted(set(names)))} ({value})" for value, names in sorted(hashes.items()))
        warnings.append(f"The nodes run with different shared settings (settings hash): {groups}. "
                        "Every node of a cluster needs the same database, storage, Redis and cluster settings.")
    outbox = FileDeletion.objects.count()
    if outbox > OUTBOX_WARNING:
        warnings.append(f"{outbox} deleted files are waiting for removal (more than {OUTBOX_WARNING}): "
                        "check that job workers are running.")
    versions = sorted({n["Version"] for n in nodes if n["Status"] == "up"})
    if len(versions) > 1:
        warnings.append(f"The nodes run different versions: {', '.join(versions)} (normal during an upgrade).")
    summary = {status: sum(1 for n in nodes if n["Status"] == status) for status in ("up", "stale", "down")}
    return {"nodes": nodes, "warnings": warnings, "outbox": outbox, "summary": summary,
            "this_node": settings.NODE_NAME, "draining": sum(1 for n in nodes if n["Draining"])}


@console_view()
def cluster_page(request):
    context = {"section": "cluster", "cluster": overview(), "heartbeat": settings.NODE_HEARTBEAT}
    if is_htmx(request):
        return render(request, "console/_cluster_nodes.html", context)
    return render(request, "console/cluster.html", context)


@console_view(GET=None, POST=ADMIN)
def node_action(request, node, action):
    if action not in ("drain", "undrain"):
        raise Http404(f"There is no node action “{action}”.")
    known = NodeProcess.objects.filter(node=node).exists() or NodeState.objects.filter(node=node).exists()
    if not known:
        raise Http404(f"No node named “{node}” has joined the cluster.")
    registry.set_draining(node, action == "drain")
    audit(request, "configure", node=node, draining=action == "drain")
    if action == "drain":
        messages.success(request, f"Node {node} is draining: the load balancer stops sending it work, "
                                  "and what it is doing finishes.")
    else:
        messages.success(request, f"Node {node} takes work again.")
    return redirect("console:cluster")
