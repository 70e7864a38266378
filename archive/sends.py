"""Sends: which instances a send covers, and the job that sends them.

Every transport that sends (the Orthanc routes /modalities/{m}/store and
/peers/{p}/store, the console's "Send" button) describes its job here, so the
parameters and the job's content (what /jobs/{id} shows, as Orthanc shows it)
are the same whoever asked. The caller submits the job.
"""

from dataclasses import dataclass

from django.conf import settings

from archive.errors import UnknownResource  # noqa: F401 (raised here, caught by name)
from archive.models import Attachment, Instance, Level
from archive.resources import BY_ANCESTOR, MODELS


@dataclass(frozen=True)
class SendJob:
    type: str
    params: dict
    content: dict


def instances_of(resources):
    """The public ids of every instance below the resources (ids of any level), sorted."""
    ids = set()
    for public_id in resources:
        for level, model in MODELS.items():
            row = model.objects.filter(public_id=public_id).values("pk").first()
            if row is None:
                continue
            parent = "pk" if level == Level.INSTANCE else BY_ANCESTOR[Level.INSTANCE][level]
            ids.update(Instance.objects.filter(**{parent: row["pk"]}).values_list("public_id", flat=True))
            break
        else:
            raise UnknownResource(f"resource {public_id} is not in the archive")
    return sorted(ids)


def to_modality(modality, resources, description, storage_commitment=False):
    """The DicomModalityStore job (C-STORE) of the resources to a Modality; with
    storage_commitment, the job then asks the modality to commit to them."""
    instances = instances_of(resources)
    content = {
        "Description": description, "FailedInstancesCount": 0, "InstancesCount": len(instances),
        "LocalAet": modality.local_aet or settings.AE_TITLE, "ParentResources": list(resources),
        "RemoteAet": modality.aet, "StorageCommitment": storage_commitment,
    }
    params = {"modality": modality.name, "instances": instances}
    if storage_commitment:
        params["storage_commitment"] = True
    return SendJob("DicomModalityStore", params, content)


def to_peer(peer, resources, description):
    """The OrthancPeerStore job (HTTP) of the resources to a Peer."""
    instances = instances_of(resources)
    size = sum(Attachment.objects.filter(resource_id__in=instances, name=Attachment.DICOM)
               .values_list("size", flat=True))
    content = {
        "Description": description, "FailedInstancesCount": 0, "InstancesCount": len(instances),
        "ParentResources": list(resources), "Peer": [peer.url, peer.username, ""], "Compress": False,
        "Size": str(size), "SizeMB": size // (1024 * 1024),
    }
    return SendJob("OrthancPeerStore", {"peer": peer.name, "instances": instances}, content)
