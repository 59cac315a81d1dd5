"""Who is calling: the user, the API key when one was used, and the key's controls."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from shengtu.errors import Forbidden

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user, and the API key when one was used."""

    user_id: int
    username: str
    role: str
    api_key_id: int | None = None
    # The key's controls (None: no limit): the models it may use, the client networks it
    # may be used from.
    key_models: tuple[str, ...] | None = None
    key_networks: tuple[IPNetwork, ...] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@functools.lru_cache(maxsize=4096)
def networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def check_client(principal: Principal, client_address: Callable[[], str]) -> None:
    """A key with allowed networks works only from a client address inside one of them.
    The address is worked out only for such a key (not on every request)."""
    if principal.key_networks is None:
        return
    address = client_address()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if ip is None or not any(ip in net for net in principal.key_networks):
        raise Forbidden(f"该 API Key 不允许从地址 {address[:64]} 使用")


def require_login_token(principal: Principal, action: str) -> None:
    """Managing keys and the password needs a login token: a leaked key must not mint
    more keys (that outlive its revocation) or lock its owner out."""
    if principal.api_key_id is not None:
        raise Forbidden(f"{action}需要使用登录 Token,不能使用 API Key")
