"""What ``HttpUpstream._send`` records while an exchange log is set (issue 23), against a
real HTTP server on loopback: keys and signatures masked wherever they appear, pictures
as their size, bodies capped, and a lost answer recorded with its request."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from shengtu.providers.base import UpstreamError
from shengtu.providers.exchanges import Exchange, ExchangeLog, recording
from shengtu.providers.http import HttpUpstream

KEY = "sk-live-" + os.urandom(12).hex()
ACCESS, SECRET = "AKLT" + os.urandom(8).hex(), "c2VjcmV0" + os.urandom(12).hex()
PICTURE = base64.b64encode(os.urandom(30_000)).decode()


async def _echo(request: web.Request) -> web.StreamResponse:
    """Answers with what it was sent, the key repeated, and a picture inline."""
    body = await request.read()
    if request.path == "/slow":
        await asyncio.sleep(1.5)
    if request.path == "/png":
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + os.urandom(500), content_type="image/png")
    if request.path == "/long":
        return web.Response(text="长" * 20_000, content_type="text/plain")
    answer = {
        "sent": len(body),
        "said": f"密钥 {KEY} 无效",
        "data": [{"b64_json": PICTURE}, {"url": "data:image/png;base64," + PICTURE}],
        "usage": {"generated_images": 2},
    }
    return web.json_response(
        answer,
        headers={"X-Request-Id": "req-123", "Set-Cookie": f"s={KEY}", "X-Other": "dropped"},
    )


@asynccontextmanager
async def _server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _recorded(
    call: Callable[[HttpUpstream], Awaitable[Any]],
    *,
    key: str = KEY,
    body_bytes: int = 16384,
    timeout: float = 5.0,
) -> list[Exchange]:
    async def run() -> list[Exchange]:
        async with _server() as url:
            upstream = HttpUpstream(url, key, timeout=timeout, rps=1000)
            book = ExchangeLog(body_bytes)
            try:
                with recording(book), suppress(UpstreamError):
                    await call(upstream)
            finally:
                await upstream.aclose()
            return book.exchanges

    return asyncio.run(run())


def _text(exchange: Exchange) -> str:
    return json.dumps(
        {f: getattr(exchange, f) for f in exchange.__slots__}, ensure_ascii=False, default=str
    )


def test_a_json_exchange_is_kept_without_the_key_and_with_pictures_as_their_size() -> None:
    (kept,) = _recorded(
        lambda up: up._send(
            "POST",
            "/v1/images?key=" + KEY + "&model=m1",
            task_no="T1",
            json={"prompt": "一只猫", "image": "data:image/png;base64," + PICTURE, "api_key": "x"},
            headers={"X-Goog-Api-Key": KEY, "X-Date": "20250101T000000Z"},
        )
    )
    text = _text(kept)
    assert KEY not in text and "Bearer" not in text and PICTURE[:100] not in text
    assert kept.method == "POST" and kept.status == 200 and kept.error is None
    assert kept.url.endswith("/v1/images?key=***&model=m1"), kept.url
    assert kept.request_headers["Authorization"] == "***"
    assert kept.request_headers["X-Goog-Api-Key"] == "***"
    assert kept.request_headers["X-Date"] == "20250101T000000Z"
    sent = json.loads(kept.request_body or "")
    assert sent["prompt"] == "一只猫" and sent["api_key"] == "***"
    assert sent["image"] == f"data:image/png;base64,<base64 {len(PICTURE)} 字符>"
    answer = json.loads(kept.response_body or "")
    assert answer["data"][0]["b64_json"] == f"<base64 {len(PICTURE)} 字符>"
    assert answer["data"][1]["url"] == f"data:image/png;base64,<base64 {len(PICTURE)} 字符>"
    assert answer["usage"] == {"generated_images": 2}
    assert answer["said"] == "密钥 *** 无效"
    assert {k.lower(): v for k, v in kept.response_headers.items()}["x-request-id"] == "req-123"
    assert "Set-Cookie" not in kept.response_headers and "X-Other" not in kept.response_headers
    assert kept.elapsed_ms >= 0 and kept.protocol == "http"


def test_each_part_of_a_two_part_key_is_masked() -> None:
    (kept,) = _recorded(
        lambda up: up._send(
            "GET",
            "/",
            task_no="T1",
            params={"Action": "CVSync2AsyncGetResult", "X-Credential": ACCESS + "/cn/cv"},
            data=f"ak={ACCESS}&sk={SECRET}",
        ),
        key=f"{ACCESS}:{SECRET}",
    )
    text = _text(kept)
    assert ACCESS not in text and SECRET not in text
    assert "Action=CVSync2AsyncGetResult" in kept.url and "X-Credential=***" in kept.url
    assert kept.request_body == "ak=***&sk=***"


def test_files_of_a_form_are_kept_as_their_size_and_type() -> None:
    def form() -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("prompt", "改成夜景")
        data.add_field(
            "image[]", b"\x89PNG" + bytes(1000), filename="a.png", content_type="image/png"
        )
        return data

    (kept,) = _recorded(lambda up: up._send("POST", "/v1/images/edits", task_no="T", data=form()))
    assert kept.request_body == "prompt: 改成夜景\nimage[]: <文件 1004 字节 image/png>"
    assert kept.request_headers["Content-Type"].startswith("multipart/form-data")


def test_a_picture_answer_is_its_size_and_a_long_one_is_capped() -> None:
    png, long = _recorded(
        lambda up: asyncio.gather(
            up._send("GET", "/png", task_no="T"), up._send("GET", "/long", task_no="T")
        ),
        body_bytes=1024,
    )
    assert png.response_body == "<508 字节 image/png>"
    assert long.response_body is not None
    kept, note = long.response_body.split("\n…")
    assert kept == "长" * 341 and note == "(已截断:共 60000 字节,只保留前 1024 字节)"


def test_an_answer_that_never_came_is_kept_with_its_request_and_why() -> None:
    (kept,) = _recorded(
        lambda up: up._send("POST", "/slow", task_no="T", json={"prompt": "慢"}), timeout=0.5
    )
    assert kept.status is None and kept.response_body is None
    assert kept.error == "上游接口超时(TimeoutError;请求可能已到达上游)"
    assert json.loads(kept.request_body or "") == {"prompt": "慢"}
    assert kept.request_headers["Authorization"] == "***"


def test_a_refused_connection_is_kept_as_not_reaching_the_upstream() -> None:
    async def run() -> list[Exchange]:
        upstream = HttpUpstream("http://127.0.0.1:9", KEY, timeout=2, rps=1000)
        book = ExchangeLog(4096)
        with recording(book), pytest.raises(UpstreamError):
            await upstream._send("GET", "/x", task_no="T")
        await upstream.aclose()
        return book.exchanges

    (kept,) = asyncio.run(run())
    assert kept.status is None and "请求未到达上游" in (kept.error or ""), kept.error


def test_nothing_is_recorded_without_an_exchange_log() -> None:
    async def run() -> None:
        async with _server() as url:
            upstream = HttpUpstream(url, KEY, rps=1000)
            answer = await upstream._send("GET", "/", task_no="T")
            await upstream.aclose()
        assert answer.status == 200

    asyncio.run(run())


def test_a_failure_to_record_never_fails_the_call() -> None:
    class Broken(HttpUpstream):
        def exchange_secrets(self) -> tuple[str, ...]:
            raise RuntimeError("boom")

    async def run() -> tuple[int, list[Exchange]]:
        async with _server() as url:
            upstream = Broken(url, KEY, rps=1000)
            book = ExchangeLog(4096)
            with recording(book):
                answer = await upstream._send("POST", "/", task_no="T", json={"a": 1})
            await upstream.aclose()
        return answer.status, book.exchanges

    status, kept = asyncio.run(run())
    assert status == 200 and kept == []
