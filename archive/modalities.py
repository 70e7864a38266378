"""The modality table as the DICOM listener's access policy, and its loading;
the rules of a modality's and of a peer's definition.

Orthanc's rules: a calling AE title that matches a modality (and its host, when
PACS_DICOM_CHECK_MODALITY_HOST is on) is known and gets what its Allow* flags
say; an unknown AE may echo and store when PACS_DICOM_ALWAYS_ALLOW_ECHO/STORE
say so, and nothing else.
"""

import json
import logging
import socket

from django.conf import settings

from archive.errors import InvalidModality, InvalidPeer  # noqa: F401 (raised here, caught by name)
from archive.models import Modality

log = logging.getLogger(__name__)

OPERATIONS = ("echo", "find", "move", "get", "store")


class ModalityAccess:
    """pacsweb's AccessPolicy for dicom.scp, backed by the database."""

    def known(self, aet, address):
        candidates = list(Modality.objects.filter(aet=aet))
        if settings.DICOM_CHECK_MODALITY_HOST:
            candidates = [m for m in candidates if _same_host(m.host, address)]
        return candidates

    def allowed(self, operation, calling_aet, address):
        known = self.known(calling_aet, address)
        if known:
            return any(getattr(m, f"allow_{operation}") for m in known)
        if operation == "echo":
            return settings.DICOM_ALWAYS_ALLOW_ECHO
        if operation == "store":
            return settings.DICOM_ALWAYS_ALLOW_STORE
        return False

    def accepts_unknown(self):
        return settings.DICOM_ALWAYS_ALLOW_ECHO or settings.DICOM_ALWAYS_ALLOW_STORE

    def known_aets(self):
        return sorted(set(Modality.objects.values_list("aet", flat=True)))

    def destination(self, aet):
        modality = Modality.objects.filter(aet=aet).order_by("pk").first()
        return (modality.host, modality.port) if modality else None


def _same_host(host, address):
    if host == address:
        return True
    try:
        return address in {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False


def parse_modality(name, value):
    """A Modality (unsaved) from Orthanc's JSON: ["AET", "host", port] or an object."""
    if isinstance(value, list):
        if len(value) < 3:
            raise InvalidModality(f"modality {name!r}: expected [AET, host, port]")
        value = {"AET": value[0], "Host": value[1], "Port": value[2],
                 **({"Manufacturer": value[3]} if len(value) > 3 else {})}
    if not isinstance(value, dict):
        raise InvalidModality(f"modality {name!r}: expected a list or an object")
    try:
        aet, host, port = str(value["AET"]).strip(), str(value["Host"]).strip(), int(value["Port"])
    except (KeyError, TypeError, ValueError):
        raise InvalidModality(f"modality {name!r}: AET, Host and a numeric Port are required")
    if not aet or len(aet) > 16:
        raise InvalidModality(f"modality {name!r}: the AE title must have 1 to 16 characters")
    if not 0 < port < 65536:
        raise InvalidModality(f"modality {name!r}: the port must be between 1 and 65535")
    fields = dict(name=name, aet=aet, host=host, port=port,
                  manufacturer=str(value.get("Manufacturer", "Generic")),
                  local_aet=str(value.get("LocalAet", "")), timeout=int(value.get("Timeout", 0) or 0))
    for operation in OPERATIONS:
        key = f"Allow{operation.capitalize()}"
        if key in value:
            if not isinstance(value[key], bool):
                raise InvalidModality(f"modality {name!r}: {key} must be true or false")
            fields[f"allow_{operation}"] = value[key]
    return Modality(**fields)


def load_modalities_file(path):
    """Create or update the modalities listed in a JSON file; return their names."""
    with open(path) as f:
        try:
            entries = json.load(f)
        except json.JSONDecodeError as error:
            raise InvalidModality(f"{path}: not valid JSON ({error})")
    if not isinstance(entries, dict):
        raise InvalidModality(f"{path}: expected an object of name → modality")
    names = []
    for name, value in entries.items():
        modality = parse_modality(name, value)
        fields = {f.name: getattr(modality, f.name) for f in Modality._meta.fields if f.name not in ("id", "name", "updated_at")}
        Modality.objects.update_or_create(name=name, defaults=fields)
        names.append(name)
    return names


def parse_peer(body):
    """The Peer fields of an Orthanc peer definition: {"Url", "Username", "Password",
    "HttpHeaders", "Timeout"} or [url, username, password]."""
    if isinstance(body, list) and 1 <= len(body) <= 3 and all(isinstance(v, str) for v in body):
        body = dict(zip(("Url", "Username", "Password"), body))
    if not isinstance(body, dict):
        raise InvalidPeer('expected {"Url": ..., "Username": ..., "Password": ...} or [url, username, password]')
    url = body.get("Url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidPeer("Url must be an http:// or https:// address")
    fields = {"url": url if url.endswith("/") else url + "/"}
    for key, field in (("Username", "username"), ("Password", "password")):
        value = body.get(key) or ""
        if not isinstance(value, str):
            raise InvalidPeer(f"{key} must be a string")
        fields[field] = value
    headers = body.get("HttpHeaders") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise InvalidPeer("HttpHeaders must map header names to strings")
    fields["http_headers"] = headers
    timeout = body.get("Timeout", 0)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        raise InvalidPeer("Timeout must be a whole number of seconds")
    fields["timeout"] = timeout
    return fields
