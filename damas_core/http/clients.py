"""Who a request comes from: the client address the sign-in limits count against.

The direct peer (``REMOTE_ADDR``) is the client, unless it is a **trusted proxy**
(``damas serve --trusted-proxies CIDR,…``). Then the client is read from
``X-Forwarded-For``, right to left: each proxy appends the address it received the
request from, so the right-most address that is not a trusted proxy is the first one
no trusted proxy vouches for — anything left of it may have been written by the
client itself. A header from a peer that is not trusted is ignored, so nobody can
pick the address they are counted as, and one client behind the proxy cannot spend
everyone's sign-in budget.

>>> trusted = proxies("10.0.0.0/8, ::1")
>>> environ = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 203.0.113.9, 10.0.0.7"}
>>> client_address(environ, trusted)
'203.0.113.9'
>>> client_address({**environ, "REMOTE_ADDR": "198.51.100.1"}, trusted)
'198.51.100.1'
>>> client_address(environ, ())
'10.0.0.5'
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxies(spec: str | Sequence[str] | None) -> tuple[Network, ...]:
    """The networks of ``spec``: CIDRs or addresses, comma-separated or a list.
    Raises ``ValueError`` naming a bad entry.

    >>> proxies("127.0.0.1,192.168.0.0/16")
    (IPv4Network('127.0.0.1/32'), IPv4Network('192.168.0.0/16'))
    """
    if not spec:
        return ()
    entries = spec.split(",") if isinstance(spec, str) else list(spec)
    found = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        try:
            found.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"trusted proxies: {entry!r} is not an address or a CIDR such as 10.0.0.0/8"
            ) from None
    return tuple(found)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in trusted)


def client_address(environ: dict[str, Any], trusted: Sequence[Network]) -> str:
    """The address of the client a request comes from (see the module docstring)."""
    peer = environ.get("REMOTE_ADDR", "")
    if not trusted or not _trusted(peer, trusted):
        return peer
    forwarded = [a.strip() for a in environ.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [a for a in forwarded if a]
    for address in reversed(forwarded):
        if not _trusted(address, trusted):
            return address
    return forwarded[0] if forwarded else peer


__all__ = ["client_address", "proxies"]
