"""The real client of a request: behind a trusted proxy, the address it forwarded.

HAProxy (deploy/haproxy.cfg, `option forwardfor`) connects from its own address and
names the client in X-Forwarded-For; without this every client behind it shares one
address, and throttling by address locks them out together. Only a proxy named in
FORWARDED_ALLOW_IPS (the same list gunicorn trusts for X-Forwarded-Proto) is
believed: anyone else could write the header. REMOTE_ADDR is rewritten once here,
first, so that throttling, the audit trail and ingest origins all see the client;
the proxy's own address stays in PACS_PROXY_ADDR.
"""

import functools
import ipaddress

from django.conf import settings


@functools.lru_cache(maxsize=8)
def _networks(text):
    """The networks of a FORWARDED_ALLOW_IPS text, parsed once per text (it is a setting)."""
    networks = []
    for item in (text or "").split(","):
        item = item.strip()
        if item == "*":
            networks.append(ipaddress.ip_network("0.0.0.0/0"))
            networks.append(ipaddress.ip_network("::/0"))
        elif item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                continue  # a host name: gunicorn resolves none either
    return tuple(networks)


def _trusted(address, networks):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def real_client(remote_addr, forwarded_for, trusted):
    """The client address: the last hop of X-Forwarded-For that is not a trusted proxy,
    when the connection itself comes from a trusted proxy; else the connection's."""
    if not forwarded_for:
        return remote_addr
    networks = _networks(trusted)
    if not _trusted(remote_addr, networks):
        return remote_addr
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _trusted(hop, networks):
            return hop
    return remote_addr


class RealClientMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        remote = request.META.get("REMOTE_ADDR", "")
        client = real_client(remote, request.META.get("HTTP_X_FORWARDED_FOR", ""), settings.FORWARDED_ALLOW_IPS)
        if client != remote:
            request.META["PACS_PROXY_ADDR"] = remote
            request.META["REMOTE_ADDR"] = client
        return self.get_response(request)
