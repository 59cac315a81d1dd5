"""The fetcher connects to the address it checked (no second DNS answer is used), and
refuses names that resolve into private networks, on every hop of a redirect."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shengtu import netguard
from shengtu.storage.fetch import FetchError, fetch_image_bytes

PUBLIC = "93.184.216.34"


def _fetch(url: str, handler, trusted: tuple[str, ...] = ()) -> object:  # type: ignore[no-untyped-def]
    async def go() -> object:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await fetch_image_bytes(client, url, max_bytes=1024, trusted_origins=trusted)

    return asyncio.run(go())


def test_connection_is_pinned_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([[PUBLIC], ["127.0.0.1"]])  # a rebinding resolver: public, then loopback

    async def resolver(host: str, port: int, wait: float) -> list[str]:
        return next(answers)

    monkeypatch.setattr(netguard, "_resolve", resolver)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"picture")

    result = _fetch("https://cdn.example.com/a.png", handler)
    assert result.data == b"picture"  # type: ignore[attr-defined]
    (request,) = seen
    assert request.url.host == PUBLIC
    assert request.headers["host"] == "cdn.example.com"
    assert request.extensions["sni_hostname"] == "cdn.example.com"


def test_names_resolving_privately_are_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def resolver(host: str, port: int, wait: float) -> list[str]:
        return ["10.1.2.3"] if host == "internal.example.com" else [PUBLIC]

    monkeypatch.setattr(netguard, "_resolve", resolver)

    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"connected to {request.url}")

    with pytest.raises(FetchError, match="结果地址不安全"):
        _fetch("http://internal.example.com/a.png", never)

    def redirecting(request: httpx.Request) -> httpx.Response:
        if request.headers["host"] == "cdn.example.com":
            return httpx.Response(302, headers={"location": "http://internal.example.com/x"})
        raise AssertionError(f"followed into {request.url}")

    with pytest.raises(FetchError, match="结果地址不安全"):
        _fetch("http://cdn.example.com/a.png", redirecting)

    def to_metadata(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/"})

    with pytest.raises(FetchError, match="结果地址不安全"):
        _fetch("http://cdn.example.com/a.png", to_metadata)


def test_trusted_upstream_origin_is_fetched_as_is_but_not_where_it_redirects() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.port == 9000:
            return httpx.Response(302, headers={"location": "http://127.0.0.1:9001/secret"})
        raise AssertionError(f"followed into {request.url}")

    with pytest.raises(FetchError, match="结果地址不安全"):
        _fetch("http://127.0.0.1:9000/r.png", handler, trusted=("http://127.0.0.1:9000",))
