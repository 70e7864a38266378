"""Modalities and peers: list, add, edit, delete, and a live test of each
(C-ECHO for a modality, GET /system for a peer)."""

import json
import time

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render

from archive import scu
from archive.models import Modality, Peer
from cluster.tasks import PeerClient, PeerError, modality_peer
from archive.roles import ADMIN
from archive import audit as trail
from console.access import FRAGMENT, audit, console_view, is_htmx
from console.forms import ModalityForm, PeerForm


@console_view()
def modality_list(request):
    return render(request, "console/modalities.html", {"section": "modalities", "modalities": Modality.objects.all()})


def _modality(name):
    modality = Modality.objects.filter(name=name).first()
    if modality is None:
        raise Http404(f"The modality “{name}” is not configured.")
    return modality


@console_view(GET=ADMIN, POST=ADMIN)
def modality_edit(request, name=None):
    instance = _modality(name) if name else None
    form = ModalityForm(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        before = trail.configuration_of("modalities", name) if name else None
        form.save()
        audit(request, "configure", modality=form.cleaned_data["name"],
              **trail.configuration_change("modalities", form.cleaned_data["name"], before))
        messages.success(request, f"Modality {form.cleaned_data['name']} saved.")
        return redirect("console:modalities")
    return render(request, "console/modality_form.html", {"section": "modalities", "form": form,
                                                          "instance": instance})


@console_view(GET=None, POST=ADMIN)
def modality_delete(request, name):
    before = trail.configuration_of("modalities", name)
    deleted, _ = Modality.objects.filter(name=name).delete()
    if deleted:
        audit(request, "configure", modality=name, **trail.configuration_change("modalities", name, before, None))
        messages.success(request, f"Modality {name} deleted.")
    else:
        messages.info(request, f"Modality {name} had already been deleted.")
    return redirect("console:modalities")


@console_view(kind=FRAGMENT, GET=None, POST=ADMIN)
def modality_echo(request, name):
    modality = _modality(name)
    started = time.monotonic()
    try:
        scu.echo(modality_peer(modality))
    except scu.DicomNetworkError as error:
        result = {"ok": False, "message": f"Echo failed: {error}"}
    except (OSError, ValueError, RuntimeError) as error:
        result = {"ok": False, "message": f"Echo failed: {error}"}
    else:
        elapsed = (time.monotonic() - started) * 1000
        result = {"ok": True, "message": f"Echo succeeded: {modality.aet} answered in {elapsed:.0f} ms."}
    return _test_result(request, result, "console:modalities")


def _test_result(request, result, page):
    if is_htmx(request):
        return render(request, "console/_test_result.html", result)
    (messages.success if result["ok"] else messages.error)(request, result["message"])
    return redirect(page)


@console_view()
def peer_list(request):
    return render(request, "console/peers.html", {"section": "peers", "peers": Peer.objects.all()})


def _peer(name):
    peer = Peer.objects.filter(name=name).first()
    if peer is None:
        raise Http404(f"The peer “{name}” is not configured.")
    return peer


@console_view(GET=ADMIN, POST=ADMIN)
def peer_edit(request, name=None):
    instance = _peer(name) if name else None
    form = PeerForm(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        before = trail.configuration_of("peers", name) if name else None
        form.save()
        audit(request, "configure", peer=form.cleaned_data["name"],
              **trail.configuration_change("peers", form.cleaned_data["name"], before))
        messages.success(request, f"Peer {form.cleaned_data['name']} saved.")
        return redirect("console:peers")
    return render(request, "console/peer_form.html", {"section": "peers", "form": form, "instance": instance})


@console_view(GET=None, POST=ADMIN)
def peer_delete(request, name):
    before = trail.configuration_of("peers", name)
    deleted, _ = Peer.objects.filter(name=name).delete()
    if deleted:
        audit(request, "configure", peer=name, **trail.configuration_change("peers", name, before, None))
        messages.success(request, f"Peer {name} deleted.")
    else:
        messages.info(request, f"Peer {name} had already been deleted.")
    return redirect("console:peers")


@console_view(kind=FRAGMENT, GET=None, POST=ADMIN)
def peer_test(request, name):
    """GET /system of the peer, as GET /peers/{name}/system does."""
    peer = _peer(name)
    started = time.monotonic()
    try:
        client = PeerClient(peer)
        try:
            status, _, data = client.request("GET", "/system")
        finally:
            client.close()
    except PeerError as error:
        result = {"ok": False, "message": f"Not reachable: {error}"}
    else:
        elapsed = (time.monotonic() - started) * 1000
        if status == 200:
            try:
                system = json.loads(data)
                what = f"{system.get('Product') or 'Orthanc'} {system.get('Version', '')} “{system.get('Name', '')}”"
            except (ValueError, AttributeError):
                what = "a server"
            result = {"ok": True, "message": f"Reached {what.strip()} in {elapsed:.0f} ms."}
        elif status in (401, 403):
            result = {"ok": False, "message": f"The peer refused our credentials (HTTP {status})."}
        else:
            result = {"ok": False, "message": f"The peer answered GET /system with HTTP {status}."}
    return _test_result(request, result, "console:peers")
