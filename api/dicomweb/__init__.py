"""DICOMweb (PS3.18): QIDO-RS search, WADO-RS and WADO-URI retrieval, STOW-RS storage.

The views translate HTTP into calls to the archive (the query engine, the ingest
path, the storage area, the renderer) and shape the answers; the helpers below
are what the three services share: DICOM JSON, absolute URLs and media type
negotiation.
"""

import ipaddress
import json
import logging
import re
import struct

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse
from django.utils.http import parse_header_parameters
from pydicom.dataelem import DataElement

log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
DEFAULT_PORTS = {"http": "80", "https": "443"}
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PROTO", "HTTP_FORWARDED")
PROXY_URL_HEADERS = ("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT")


def dicom_json_response(payload, status=200):
    return HttpResponse(json.dumps(payload), status=status, content_type=DICOM_JSON)


def element_json(element):
    """The DICOM JSON form (PS3.18 F.2) of a pydicom DataElement."""
    try:
        return element.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=0)
    except (ValueError, TypeError, OverflowError) as error:
        values = element.value if element.VM > 1 else [element.value]
        return unparsed_json(element.VR, values, error)
    except IndexError:
        if element.VR != "PN" or element.VM < 2:
            raise
        # An empty name among names ("SMITH^ANNE\\"): pydicom's conversion fails on
        # it; F.2.5 makes it null, and each other name is converted alone.
        return {"vr": "PN", "Value": [element_json(DataElement(element.tag, "PN", name))["Value"][0]
                                      if str(name) else None for name in element.value]}


# What pydicom's value conversion (pydicom.values) does to each of these VRs, for a
# value of ASCII bytes: strip the whole value's trailing padding and split it,
# split it and strip each value (AE: both ends; SH, LO, UC: the end), or keep it one value.
_SPLIT_THEN_STRIP = {"CS", "DA", "DT", "TM", "AS", "UI", "IS", "DS"}
_STRIP_EACH = {"SH", "LO", "UC"}
_SINGLE = {"LT", "ST", "UT"}
_NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_INTEGER = re.compile(r" *[+-]?[0-9]+ *")
_DECIMAL = re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *")


def raw_element_json(vr, value, little_endian=True):
    """element_json() of an element still in its encoded form, made from its bytes:
    the same dict, for the VRs and values whose conversion is plain (ASCII text,
    decimal numbers, binary numbers in little endian); None for any other, which
    pydicom converts. A study's metadata is mostly such elements, and pydicom's
    conversion of each was three quarters of its CPU."""
    if vr in _NUMBERS:
        if not little_endian:
            return None
        size = struct.calcsize(_NUMBERS[vr])
        if len(value) % size:
            return None
        numbers = struct.unpack(f"<{len(value) // size}{_NUMBERS[vr]}", value)
        if not numbers:
            return {"vr": vr}
        return {"vr": vr, "Value": [float(n) for n in numbers] if vr in ("FL", "FD") else list(numbers)}
    if not value.isascii() or b"\x1b" in value:
        return None  # decoded by the data set's character sets, escape sequences included
    text = value.decode("ascii")
    if vr in _SPLIT_THEN_STRIP:
        values = text.rstrip(" \0").split("\\")
    elif vr in _STRIP_EACH:
        values = [v.rstrip("\0 ") for v in text.split("\\")]
    elif vr == "AE":
        values = [v.strip() for v in text.split("\\")]
    elif vr in _SINGLE:
        values = [text.rstrip("\0 ")]
    elif vr == "PN":
        values = text.rstrip("\0 ").split("\\")
        if len(values) > 1 and not all(values) or any("=" in v for v in values):
            return None  # an empty name among names, or ideographic and phonetic groups
        return {"vr": vr, "Value": [{"Alphabetic": v} for v in values]} if values != [""] else {"vr": vr}
    else:
        return None
    if values == [""]:
        return {"vr": vr}  # no value (F.2.5)
    if vr == "IS":
        if not all(_INTEGER.fullmatch(v) for v in values):
            return None
        return {"vr": vr, "Value": [int(v) for v in values]}
    if vr == "DS":
        if not all(_DECIMAL.fullmatch(v) for v in values):
            return None
        return {"vr": vr, "Value": [float(v) for v in values]}
    return {"vr": vr, "Value": values}


def unparsed_json(vr, values, error):
    """An attribute whose numbers do not parse (an IS of "1A"), kept as the strings they are.

    F.2.3 lets IS, DS, SV and UV be JSON strings to preserve the original; one
    bad value must not fail a whole search or metadata answer.
    """
    log.warning("a %s value is not a number (%s); sent as a string", vr, error)
    return {"vr": vr, "Value": [str(v) for v in values]}


def studies_url(request):
    """Absolute URL of /dicom-web/studies, wherever the routes are mounted (PS3.18 §10.4.1.2 RetrieveURL)."""
    return public_base_url(request) + reverse("dicomweb:studies")


def public_base_url(request):
    """scheme://host[:port][/prefix] of the archive as the client reaches it (no trailing slash).

    PACS_PUBLIC_URL when set; otherwise the request's, corrected by the
    X-Forwarded-* headers of a trusted proxy (a Host without its port, or a TLS
    proxy in front of plain HTTP, would otherwise give URLs that lead nowhere).
    """
    if settings.PUBLIC_URL:
        return settings.PUBLIC_URL
    scheme, host = request.scheme, request.get_host()
    forwarded = any(name in request.META for name in FORWARDED_HEADERS)
    if not forwarded and not _has_port(host) and request.META.get("SERVER_PORT") not in (None, DEFAULT_PORTS[scheme]):
        # A client that reached us directly but sent Host without the port
        # (dicomweb-client does): the port it connected to is the one to use.
        # Behind a proxy (which adds X-Forwarded-*) the port we listen on is
        # not the client's, and the request's Host stands.
        host = f"{host}:{request.META['SERVER_PORT']}"
    # Only these three change the URL; without them (most requests) no proxy needs trusting.
    if any(name in request.META for name in PROXY_URL_HEADERS) and _from_trusted_proxy(request):
        scheme = _first(request.headers.get("X-Forwarded-Proto")) or scheme
        host = _first(request.headers.get("X-Forwarded-Host")) or host
        port = _first(request.headers.get("X-Forwarded-Port"))
        if port and not _has_port(host) and port != DEFAULT_PORTS.get(scheme):
            host = f"{host}:{port}"
    return f"{scheme}://{host}"


def _has_port(host):
    return ":" in host.rsplit("]", 1)[-1]  # an IPv6 literal is bracketed


def _from_trusted_proxy(request):
    try:
        # The connection's own address: pacsweb/clients.py may have put the client's
        # (from X-Forwarded-For) in REMOTE_ADDR and kept the proxy's here.
        address = ipaddress.ip_address(request.META.get("PACS_PROXY_ADDR") or request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    # FORWARDED_ALLOW_IPS: the one list of trusted proxies (pacsweb/clients.py, gunicorn).
    for item in (settings.FORWARDED_ALLOW_IPS or "").split(","):
        item = item.strip()
        if not item:
            continue
        if item == "*":
            return True
        try:
            if address in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            log.warning("FORWARDED_ALLOW_IPS: %r is not an address or a network", item)
    return False


def _first(value):
    # A chain of proxies lists one value each, the client's side first.
    return value.split(",")[0].strip() if value else ""


def media_ranges(request):
    """What the client accepts, as (media type, parameters) pairs in its order.

    The `accept` query parameter replaces the Accept header (PS3.18 §8.3.3.1).
    Empty when the client states nothing: anything goes.
    """
    text = request.GET.get("accept") or request.META.get("HTTP_ACCEPT", "")
    ranges = []
    for item in _split_outside_quotes(text):
        if item.strip():
            media_type, params = parse_header_parameters(item)
            ranges.append((media_type.strip().lower(), {k.lower(): v for k, v in params.items()}))
    return ranges


def accepts_dicom_json(request):
    """Whether the client takes DICOM JSON (plain application/json is the same bytes)."""
    ranges = media_ranges(request)
    return not ranges or any(matches(r, DICOM_JSON) or matches(r, "application/json") for r, _ in ranges)


def matches(pattern, media_type):
    """Whether a media range (`*/*`, `image/*`, `image/png`) covers a media type."""
    if pattern in ("*/*", media_type):
        return True
    kind, _, subtype = pattern.partition("/")
    return subtype == "*" and media_type.startswith(kind + "/")


def _split_outside_quotes(text):
    # Accept: multipart/related; type="application/dicom", image/png — a comma
    # inside quotes belongs to a parameter value.
    if '"' not in text:
        return text.split(",")
    items, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return items
