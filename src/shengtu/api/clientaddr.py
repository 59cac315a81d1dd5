"""Who the client is: the peer address, or behind trusted proxies what they forwarded.

``X-Forwarded-For`` is anyone's to write, so it is believed only as far as the chain of
proxies the operator named (``SHENGTU_TRUSTED_PROXIES``): read from the right, each hop
added by a trusted proxy is skipped, and the first address that is not a trusted proxy is
the client. Without trusted proxies the header is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"10.0.0.1, 192.168.0.0/16"`` → networks; a bad entry is a configuration error."""
    networks = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"SHENGTU_TRUSTED_PROXIES 中的地址无效: {item}") from exc
    return tuple(networks)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class ClientAddresses:
    def __init__(self, trusted: Iterable[Network]) -> None:
        self.trusted = tuple(trusted)

    def _is_trusted(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip in net for net in self.trusted)

    def of(self, scope: Scope) -> str:
        peer = scope.get("client")
        address = str(peer[0]) if peer else "unknown"
        peer_ip = _ip(address)
        if not self.trusted or peer_ip is None or not self._is_trusted(peer_ip):
            return address
        hops: list[str] = []
        for name, value in scope.get("headers") or ():
            if name == b"x-forwarded-for":
                hops += value.decode("latin-1").split(",")
        for hop in reversed(hops):
            ip = _ip(hop)
            if ip is None:
                # Garbage in the chain: what is left of it cannot be believed either.
                return address
            address = str(ip)
            if not self._is_trusted(ip):
                return address
        return address
