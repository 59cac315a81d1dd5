"""Download a picture: streamed, size-capped, each hop checked against private networks,
and the connection pinned to the address that was checked."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from shengtu.netguard import UnsafeURL, check_public_url

MAX_REDIRECTS = 3


class FetchError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


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


async def fetch_image_bytes(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    trusted_origins: Iterable[str] = (),
    read_seconds: float = 60.0,
) -> Fetched:
    trusted = frozenset(trusted_origins)
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            target, headers, extensions = await pinned_request(current, trusted)
        except UnsafeURL as exc:
            raise FetchError(f"结果地址不安全: {exc.message}", transient=False) from exc
        request = client.build_request(
            "GET", target, headers=headers, extensions=extensions, timeout=read_seconds
        )
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException as exc:
            raise FetchError("下载结果图片超时", transient=True) from exc
        except httpx.HTTPError as exc:
            raise FetchError(f"下载结果图片失败: {type(exc).__name__}", transient=True) from exc
        try:
            if response.is_redirect:
                location = response.headers.get("location", "")
                current = urljoin(current, location)
                continue
            if response.status_code >= 500 or response.status_code == 429:
                raise FetchError(f"下载结果图片失败: HTTP {response.status_code}", transient=True)
            if response.status_code != 200:
                raise FetchError(f"下载结果图片失败: HTTP {response.status_code}", transient=False)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"结果图片超过 {max_bytes} 字节上限", transient=False)
            body = bytearray()
            try:
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise FetchError(f"结果图片超过 {max_bytes} 字节上限", transient=False)
            except httpx.HTTPError as exc:
                raise FetchError("下载结果图片中断", transient=True) from exc
            return Fetched(bytes(body), current)
        finally:
            await response.aclose()
    raise FetchError("结果图片地址重定向次数过多", transient=False)
