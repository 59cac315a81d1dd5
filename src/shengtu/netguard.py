"""Which URLs the server may fetch or hand upstream: http(s) to public addresses only.

Every spelling of an address is normalised by the resolver itself (``getaddrinfo``
reads ``2130706433``, ``0x7f.1`` and ``127.1`` as 127.0.0.1), and every address a
name resolves to must be public. The fetcher then connects to the address that was
checked, so a second DNS answer (rebinding) cannot slip by.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from shengtu.errors import BadRequest, ServiceUnavailable

_BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeURL(BadRequest):
    pass


# Where a URL handed to the upstream may point: web ports only.
WEB_PORTS = frozenset({80, 443})


def is_public_ip(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_ip(ip.ipv4_mapped)
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public_ip(embedded):
            return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


@dataclass(frozen=True)
class CheckedURL:
    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]  # empty when the name did not resolve here


def parse_http_url(url: str) -> SplitResult:
    if not isinstance(url, str) or not url.strip():
        raise UnsafeURL("图片 URL 不能为空")
    url = url.strip()
    if len(url) > 2048:
        raise UnsafeURL("图片 URL 过长(最多 2048 个字符)")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise UnsafeURL(f"图片 URL 含有空白或控制字符: {url[:100]}")
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"图片 URL 格式错误: {url[:100]}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise UnsafeURL(f"图片 URL 只支持 http 和 https 协议: {url[:100]}")
    if not parts.hostname:
        raise UnsafeURL(f"图片 URL 缺少主机名: {url[:100]}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeURL(f"图片 URL 不能包含用户名或密码: {url[:100]}")
    return parts


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # Legacy IPv4 spellings: decimal, octal, hex, and short forms like 127.1.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _addresses(infos: list[Any]) -> list[str]:
    return sorted({str(info[4][0]).split("%")[0] for info in infos})


async def _resolve(host: str, port: int, wait: float) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), wait)
    except (OSError, TimeoutError, UnicodeError):
        return []
    return _addresses(infos)


class Resolver:
    """Name lookups in threads of their own, at most ``threads`` at once and ``queue``
    waiting: names whose servers never answer hold only these threads, not the default
    pool the worker's calls use, and past the queue a lookup is refused at once (503)."""

    def __init__(self, threads: int = 8, queue: int = 64) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="shengtu-dns")
        self._limit = threads + queue
        self._busy = 0

    def _done(self, _: object) -> None:
        self._busy -= 1

    async def resolve(self, host: str, port: int, wait: float) -> list[str]:
        if self._busy >= self._limit:
            raise ServiceUnavailable("域名解析繁忙,请稍后再试")
        loop = asyncio.get_running_loop()
        self._busy += 1
        # Counted until the thread is free, not until we stop waiting for it.
        lookup = loop.run_in_executor(
            self._pool, socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM
        )
        lookup.add_done_callback(self._done)
        done, _ = await asyncio.wait({lookup}, timeout=wait)
        if not done:
            # Given up on; its error, when it comes, is nobody's to raise.
            lookup.add_done_callback(lambda f: f.exception())
            return []
        if lookup.exception() is not None:
            return []
        return _addresses(lookup.result())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def check_public_url(
    url: str,
    *,
    require_resolved: bool = False,
    resolve_seconds: float = 3.0,
    resolver: Resolver | None = None,
    ports: frozenset[int] | None = None,
) -> CheckedURL:
    """Refuse a URL that points into a private network; return where it resolves.

    ``require_resolved`` is for URLs the server itself fetches: a name that does not
    resolve cannot be fetched. URLs only handed upstream may carry names this machine
    cannot resolve; the upstream resolves them on the public internet, so those are held
    to ``ports`` (80 and 443) and cannot reach a service on an odd port there.
    """
    parts = parse_http_url(url)
    host = (parts.hostname or "").rstrip(".").lower()
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    if ports is not None and port not in ports:
        allowed = "、".join(str(p) for p in sorted(ports))
        wrong_port: UnsafeURL | None = UnsafeURL(f"图片 URL 只允许端口 {allowed}: {url[:100]}")
    else:
        wrong_port = None
    refused = UnsafeURL(f"图片 URL 指向内网或保留地址,已拒绝: {url[:100]}")
    if not host or host == "localhost" or host.endswith(_BLOCKED_SUFFIXES):
        raise refused
    literal = _literal_ip(host)
    if literal is not None:
        if not is_public_ip(literal):
            raise refused
        if wrong_port is not None:
            raise wrong_port
        return CheckedURL(url.strip(), parts.scheme.lower(), host, port, (str(literal),))
    if host.replace(".", "").isdigit():
        raise UnsafeURL(f"图片 URL 主机名无效: {url[:100]}")
    if wrong_port is not None:
        # Refused before a lookup: a name need not be resolved to be on the wrong port.
        raise wrong_port
    if resolver is not None:
        addresses = await resolver.resolve(host, port, resolve_seconds)
    else:
        addresses = await _resolve(host, port, resolve_seconds)
    for address in addresses:
        if not is_public_ip(ipaddress.ip_address(address)):
            raise refused
    if require_resolved and not addresses:
        raise UnsafeURL(f"无法解析图片 URL 的主机名: {url[:100]}")
    return CheckedURL(url.strip(), parts.scheme.lower(), host, port, tuple(addresses))
