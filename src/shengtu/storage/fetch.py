"""Download a picture: streamed, size-capped, each hop checked against private networks,
and the connection pinned to the address that was checked.

A download is bounded as a whole, not per read: by its time limit (a task's downloads
end at its deadline) and by a floor on its rate, judged over each window of a few
seconds, so a server that sends a byte a second is cut off long before any per-read
timeout would notice it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from shengtu.netguard import UnsafeURL, check_public_url

MAX_REDIRECTS = 3


class FetchError(Exception):
    """``transient``: trying again later may work. ``out_of_time``: the download's time
    limit (its task's deadline) ran out."""

    def __init__(self, message: str, *, transient: bool, out_of_time: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.out_of_time = out_of_time


@dataclass(frozen=True)
class Fetched:
    data: bytes
    url: str


def origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


async def pinned_request(
    url: str, trusted_origins: frozenset[str]
) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL to connect to, with the headers and extensions that keep the name."""
    if origin(url) in trusted_origins:
        return url, {}, {}
    checked = await check_public_url(url, require_resolved=True)
    address = checked.addresses[0]
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    headers = {"Host": parts.netloc}
    extensions = {"sni_hostname": checked.host} if checked.scheme == "https" else {}
    return pinned, headers, extensions


class _Pace:
    """When a download must be over by: its end (``total`` seconds from the start), or,
    with a floor, the end of the current window unless the window brings its quota
    (``floor`` × ``window`` bytes), whereupon the next window starts. Name lookups,
    connecting, redirects and headers all count against the window they fall in."""

    def __init__(self, total: float | None, floor: float, window: float) -> None:
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self.end = None if total is None else now + total
        self.quota = floor * window if floor > 0 else 0.0
        self.window = window
        self._since = now
        self._got = 0
        self._bound: asyncio.Timeout | None = None

    def watch(self, bound: asyncio.Timeout) -> None:
        self._bound = bound
        self._reschedule()

    def _reschedule(self) -> None:
        assert self._bound is not None
        times = [self.end] if self.end is not None else []
        if self.quota:
            times.append(self._since + self.window)
        self._bound.reschedule(min(times) if times else None)

    def got(self, size: int) -> None:
        if not self.quota:
            return
        self._got += size
        if self._got >= self.quota:
            self._since, self._got = self._loop.time(), 0
            self._reschedule()

    def ran_out_of_time(self) -> bool:
        """Whether the bound that fired was the end (else the rate's window)."""
        return self.end is not None and self._bound is not None and self._bound.when() == self.end


async def fetch_image_bytes(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    trusted_origins: Iterable[str] = (),
    read_seconds: float = 60.0,
    total_seconds: float | None = None,
    min_bytes_per_second: float = 0.0,
    rate_window_seconds: float = 10.0,
    what: str = "结果图片",
) -> Fetched:
    """``total_seconds``: the whole download's time limit, every hop and byte of it;
    ``min_bytes_per_second``: its floor, over each ``rate_window_seconds`` (0: none);
    ``what``: the picture's name in the messages."""
    pace = _Pace(total_seconds, min_bytes_per_second, rate_window_seconds)
    try:
        async with asyncio.timeout(None) as bound:
            pace.watch(bound)
            return await _fetch(
                client, url, max_bytes, frozenset(trusted_origins), read_seconds, pace, what
            )
    except TimeoutError as exc:
        if not bound.expired():
            raise
        if pace.ran_out_of_time():
            raise FetchError(
                f"下载{what}超过时限({total_seconds:.0f} 秒)", transient=False, out_of_time=True
            ) from exc
        raise FetchError(
            f"下载{what}速度过慢({rate_window_seconds:g} 秒内不足 {pace.quota:.0f} 字节)",
            transient=True,
        ) from exc


async def _fetch(
    client: httpx.AsyncClient,
    url: str,
    max_bytes: int,
    trusted: frozenset[str],
    read_seconds: float,
    pace: _Pace,
    what: str,
) -> Fetched:
    where = "结果地址" if what == "结果图片" else f"{what}地址"
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            target, headers, extensions = await pinned_request(current, trusted)
        except UnsafeURL as exc:
            raise FetchError(f"{where}不安全: {exc.message}", transient=False) from exc
        request = client.build_request(
            "GET", target, headers=headers, extensions=extensions, timeout=read_seconds
        )
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException as exc:
            raise FetchError(f"下载{what}超时", transient=True) from exc
        except httpx.HTTPError as exc:
            raise FetchError(f"下载{what}失败: {type(exc).__name__}", transient=True) from exc
        try:
            if response.is_redirect:
                location = response.headers.get("location", "")
                current = urljoin(current, location)
                continue
            if response.status_code >= 500 or response.status_code == 429:
                raise FetchError(f"下载{what}失败: HTTP {response.status_code}", transient=True)
            if response.status_code != 200:
                raise FetchError(f"下载{what}失败: HTTP {response.status_code}", transient=False)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"{what}超过 {max_bytes} 字节上限", transient=False)
            body = bytearray()
            try:
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise FetchError(f"{what}超过 {max_bytes} 字节上限", transient=False)
                    pace.got(len(chunk))
            except httpx.HTTPError as exc:
                raise FetchError(f"下载{what}中断", transient=True) from exc
            return Fetched(bytes(body), current)
        finally:
            await response.aclose()
    raise FetchError(f"{what}地址重定向次数过多", transient=False)
