"""The job types: archives and media, sends to modalities and peers, retrieves;
and the removal of deleted files by the deletion workers.

Each body reads its parameters, works item by item from context.position (so a
resumed or re-queued job goes on where it stopped), and reports each item with
context.step(), where pause and cancel take effect.
"""

import base64
import dataclasses
import http.client
import logging
import ssl
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.utils import timezone

from archive import deletion
from archive.models import Attachment, Modality, Peer
from archive.storage import MissingFile, get_storage
from cluster.jobs import JobFailed, job_type, queue
from cluster.models import Job

log = logging.getLogger("pacsweb.jobs")

NETWORK_ERROR = (9, "Error in the network protocol")
UNKNOWN_RESOURCE = (17, "Unknown resource")


def _mb(size):
    return size // (1024 * 1024)


# --- deleted files ---------------------------------------------------------------


def queue_file_removal(sender, outbox_ids, **kwargs):
    """Receiver of archive.signals.files_released: hand the outbox rows to the
    deletion workers in batches; what Redis cannot take now the housekeeper
    removes later (deletion.redrive)."""
    try:
        deletions = queue("deletions")
        for start in range(0, len(outbox_ids), deletion.BATCH):
            deletions.enqueue(deletion.remove_files, outbox_ids[start:start + deletion.BATCH], job_timeout=600,
                              result_ttl=0, failure_ttl=3600)
    except redis.exceptions.RedisError as error:
        log.warning("file removal not queued (%s): the housekeeper will remove the files", error)


# --- archives ------------------------------------------------------------------


def archive_name(job_id):
    return f"{job_id}.zip"


def _remove_archive(job):
    get_storage().discard_archive(archive_name(job.id))


def _build_archive(context, media):
    from archive import archives  # noqa: PLC0415 (pydicom: only the processes that build archives load it)

    try:
        files = archives.entries(context.params["resources"], media=media)
    except archives.UnknownResource as missing:
        raise JobFailed(f"resource {missing} is no longer in the archive", *UNKNOWN_RESOURCE)
    storage = get_storage()
    out, publish = storage.archive_writer(archive_name(context.id))
    try:
        with out:
            uncompressed = archives.write_zip_file(files, out, media=media, step=context.step,
                                                   transcode_to=context.params.get("transcode"))
            size = publish()
    except BaseException as error:
        storage.discard_archive(archive_name(context.id))
        if isinstance(error, MissingFile):
            # A DELETE won the race: its files went after the list was made.
            raise JobFailed("an instance of the archive was deleted while the archive was being built; "
                            "nothing was kept (submit the archive again for what remains)", *UNKNOWN_RESOURCE)
        raise
    context.content.update({
        "ArchiveSize": str(size), "ArchiveSizeMB": _mb(size), "Description": "REST API",
        "InstancesCount": len(files), "UncompressedSize": str(uncompressed), "UncompressedSizeMB": _mb(uncompressed),
    })
    context.output = archive_name(context.id), size


def expire_archives():
    """Keep at most PACS_ARCHIVE_CACHE_SIZE archives, none older than
    PACS_ARCHIVE_TTL since last used; remove files no job owns. Returns how many
    files were removed."""
    storage = get_storage()
    now = timezone.now()
    removed = 0
    owned = Job.objects.exclude(output="").order_by("-output_used_at")
    keep = set()
    for position, job in enumerate(owned):
        used = job.output_used_at or job.completed_at or now
        if position < settings.ARCHIVE_CACHE_SIZE and (now - used).total_seconds() < settings.ARCHIVE_TTL:
            keep.add(job.output)
            continue
        # Forget the output first: a download that starts now gets a clear 404.
        if Job.objects.filter(pk=job.pk, output=job.output).update(output="", output_size=0):
            storage.discard_archive(job.output)
            removed += 1
    running = set(Job.objects.filter(state__in=("Running", "Pending", "Paused"), type__in=("Archive", "Media"))
                  .values_list("id", flat=True))
    for name, partial, age in storage.archive_files():
        if name in keep:
            continue
        owner = name.removesuffix(".zip")
        # A job writing right now owns its partial file; what a killed run left
        # behind has no running owner (its re-run starts a new file).
        if owner in running and age < settings.JOB_HEARTBEAT_TIMEOUT:
            continue
        if not partial and Job.objects.filter(pk=owner, output=name).exists():
            continue
        storage.discard_archive(name)
        removed += 1
    return removed


@job_type("Archive", on_remove=_remove_archive, after=expire_archives)
def archive_job(context):
    _build_archive(context, media=False)


@job_type("Media", on_remove=_remove_archive, after=expire_archives)
def media_job(context):
    _build_archive(context, media=True)


# --- sends ---------------------------------------------------------------------


def _modality(name):
    modality = Modality.objects.filter(name=name).first()
    if modality is None:
        raise JobFailed(f"modality {name!r} is no longer configured", 7, "Inexistent item")
    return modality


def modality_peer(modality):
    from archive import scu  # noqa: PLC0415 (pynetdicom: only the processes that talk DICOM load it)

    return scu.Peer(modality.aet, modality.host, modality.port, modality.local_aet, modality.timeout)


@job_type("DicomModalityStore", queue="transfers")
def modality_store_job(context):
    from archive import scu  # noqa: PLC0415

    modality = _modality(context.params["modality"])
    instances = context.params["instances"]
    todo = instances[context.position:]
    content = context.content
    content.setdefault("FailedInstancesCount", 0)
    start = context.position

    def step(done, _total):
        context.step(start + done, len(instances))

    peer = modality_peer(modality)
    # The options of POST /modalities/{m}/store: a LocalAet the modality does not
    # set itself, a Timeout, and C-MOVE originator fields.
    if context.params.get("local_aet") and not modality.local_aet:
        peer = dataclasses.replace(peer, local_aet=context.params["local_aet"])
    if context.params.get("timeout"):
        peer = dataclasses.replace(peer, timeout=context.params["timeout"])
    originator = context.params.get("move_originator")
    try:
        report = scu.store(peer, todo, progress=step, originator=tuple(originator) if originator else None)
    except scu.DicomNetworkError as error:
        raise JobFailed(str(error), *NETWORK_ERROR)
    content["FailedInstancesCount"] += report.failed
    if report.failed:
        content["FailedInstances"] = report.failed_uids[:100]
    # Permissive (Orthanc): the instances the modality refused do not fail the job.
    if report.failed and not context.params.get("permissive"):
        raise JobFailed(f"{modality.aet} refused {report.failed} of {len(instances)} instances", *NETWORK_ERROR)
    if context.params.get("storage_commitment"):
        _commit(context, modality, instances)


def _commit(context, modality, instances):
    """Ask the modality to commit to what was sent; the job's content says what it committed."""
    from archive import scu  # noqa: PLC0415

    try:
        result = scu.request_commitment(modality_peer(modality), instances)
    except scu.DicomNetworkError as error:
        raise JobFailed(f"storage commitment: {error}", *NETWORK_ERROR)
    content = context.content
    content["StorageCommitmentTransactionUID"] = result.transaction_uid
    content["CommittedInstancesCount"] = len(result.committed)
    content["UncommittedInstances"] = [{"SOPInstanceUID": uid, "FailureReason": f"0x{reason:04X}"}
                                       for uid, reason in result.failed[:100]]
    if result.failed:
        raise JobFailed(f"{modality.aet} did not commit to {len(result.failed)} of {len(instances)} instances",
                        *NETWORK_ERROR)


class PeerError(Exception):
    pass


class PeerClient:
    """HTTP to an Orthanc-compatible peer, one keep-alive connection."""

    def __init__(self, peer):
        self.peer = peer
        url = urlsplit(peer.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise PeerError(f"peer {peer.name}: Url must be http:// or https://, not {peer.url!r}")
        self.base = url.path.rstrip("/")
        timeout = peer.timeout or settings.DICOM_TIMEOUT
        if url.scheme == "https":
            self.connection = http.client.HTTPSConnection(url.hostname, url.port, timeout=timeout,
                                                          context=ssl.create_default_context(), blocksize=1 << 20)
        else:
            self.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout, blocksize=1 << 20)
        self.headers = {str(k): str(v) for k, v in (peer.http_headers or {}).items()}
        if peer.username:
            token = base64.b64encode(f"{peer.username}:{peer.password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def request(self, method, path, body=None, length=None, content_type=None):
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        if length is not None:
            headers["Content-Length"] = str(length)
        try:
            self.connection.request(method, self.base + path, body=body, headers=headers)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.connection.close()
            raise PeerError(f"peer {self.peer.name} at {self.peer.url}: {error}")
        return response.status, response.getheader("Content-Type", ""), data

    def close(self):
        self.connection.close()


def _peer(name):
    peer = Peer.objects.filter(name=name).first()
    if peer is None:
        raise JobFailed(f"peer {name!r} is no longer configured", 7, "Inexistent item")
    return peer


@job_type("OrthancPeerStore", queue="transfers")
def peer_store_job(context):
    peer = _peer(context.params["peer"])
    instances = context.params["instances"]
    keys = dict(Attachment.objects.filter(resource_id__in=instances, name=Attachment.DICOM)
                .values_list("resource_id", "storage_key"))
    storage = get_storage()
    content = context.content
    content.setdefault("FailedInstancesCount", 0)
    try:
        client = PeerClient(peer)
    except PeerError as error:
        raise JobFailed(str(error), *NETWORK_ERROR)
    try:
        for done, public_id in enumerate(instances[context.position:], context.position + 1):
            key = keys.get(public_id)
            if key is None:  # deleted since the job was created
                content["FailedInstancesCount"] += 1
                context.step(done, len(instances))
                continue
            try:
                with storage.open(key) as stream:
                    status, _, answer = client.request("POST", "/instances", body=stream,
                                                       length=storage.size(key), content_type="application/dicom")
            except MissingFile:
                content["FailedInstancesCount"] += 1
                context.step(done, len(instances))
                continue
            except PeerError as error:
                raise JobFailed(str(error), *NETWORK_ERROR)
            if status == 401 or status == 403:
                raise JobFailed(f"peer {peer.name} refused our credentials (HTTP {status})", *NETWORK_ERROR)
            if status != 200:
                content["FailedInstancesCount"] += 1
                log.warning("peer %s refused instance %s: HTTP %d %s", peer.name, public_id, status, answer[:200])
            context.step(done, len(instances))
    finally:
        client.close()
    if content["FailedInstancesCount"]:
        raise JobFailed(f"peer {peer.name} did not store {content['FailedInstancesCount']} of {len(instances)} "
                        "instances", *NETWORK_ERROR)


# --- retrieves -----------------------------------------------------------------


def _retrieve(context, method):
    from archive import scu  # noqa: PLC0415

    modality = _modality(context.params["modality"])
    identifiers = context.params["identifiers"]
    level = context.params["level"]
    content = context.content
    for field in ("CompletedCount", "FailedCount", "WarningCount"):
        content.setdefault(field, 0)
    for index in range(context.position, len(identifiers)):
        try:
            if method == "C-GET":
                report = scu.get(modality_peer(modality), level, [identifiers[index]])
            else:
                report = scu.move(modality_peer(modality), level, [identifiers[index]], context.params["target"])
        except scu.DicomNetworkError as error:
            raise JobFailed(str(error), *NETWORK_ERROR)
        content["CompletedCount"] += report.completed
        content["FailedCount"] += report.failed
        content["WarningCount"] += report.warning
        context.step(index + 1, len(identifiers), force=True)
    if content["FailedCount"]:
        raise JobFailed(f"{content['FailedCount']} sub-operations failed at {modality.aet}", *NETWORK_ERROR)


@job_type("DicomMoveScu", queue="transfers")
def move_job(context):
    _retrieve(context, "C-MOVE")


@job_type("DicomGetScu", queue="transfers")
def get_job(context):
    _retrieve(context, "C-GET")
