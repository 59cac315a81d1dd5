"""A download is bounded as a whole (issue 20, finding 3): by its time limit and by a floor
on its rate over each window, whatever the per-read timeouts say. Against a real HTTP
server on loopback that feeds its answer slowly in every way it can."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from shengtu.storage.fetch import FetchError, fetch_image_bytes

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n"
PICTURE = bytes(range(256)) * 8192  # 2 MiB


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _answer(path: str, writer: asyncio.StreamWriter) -> None:
    if path == "/drip":  # a byte every half second, without end
        await _send(writer, HEAD)
        while True:
            await _send(writer, b"x")
            await asyncio.sleep(0.5)
    elif path == "/burst-then-drip":  # fast at first, then a byte a second
        await _send(writer, HEAD + bytes(64 * 1024))
        while True:
            await asyncio.sleep(1.0)
            await _send(writer, b"x")
    elif path == "/slow-headers":  # the status line and headers a byte at a time
        for byte in HEAD:
            await _send(writer, bytes([byte]))
            await asyncio.sleep(0.3)
    elif path == "/fast":
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
            b"Content-Length: " + str(len(PICTURE)).encode() + b"\r\nConnection: close\r\n\r\n"
        )
        await _send(writer, head + PICTURE)
    elif path.startswith("/hop"):  # redirects, each answered after 0.6 s
        await asyncio.sleep(0.6)
        hop = int(path.removeprefix("/hop"))
        await _send(
            writer,
            f"HTTP/1.1 302 Found\r\nLocation: /hop{hop + 1}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode(),
        )


@asynccontextmanager
async def server() -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            await _answer(line.split()[1].decode(), writer)
        except (ConnectionError, OSError):
            pass  # the client hung up: what the bounds are for
        finally:
            writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listening.close()


def fetch(path: str, **bounds: float) -> tuple[float, object]:
    """(seconds taken, the Fetched or the FetchError) of fetching ``path``; the test
    server's origin is trusted, as an upstream's is (no private-network refusal)."""

    async def go() -> tuple[float, object]:
        async with server() as base, httpx.AsyncClient() as client:
            started = time.monotonic()
            outcome: object
            try:
                outcome = await fetch_image_bytes(
                    client,
                    base + path,
                    max_bytes=64 * 1024 * 1024,
                    trusted_origins=(f"{base}",),
                    **bounds,  # type: ignore[arg-type]
                )
            except FetchError as exc:
                outcome = exc
            return time.monotonic() - started, outcome

    return asyncio.run(go())


def test_a_drip_is_cut_by_the_rate_floor_within_its_window() -> None:
    took, outcome = fetch("/drip", min_bytes_per_second=100, rate_window_seconds=1.0)
    assert isinstance(outcome, FetchError), outcome
    assert outcome.transient and not outcome.out_of_time
    assert "速度过慢" in outcome.message, outcome.message
    assert 0.9 <= took < 2.5, took  # the per-read timeout (60 s) never fired


def test_a_drip_above_no_floor_is_cut_at_the_time_limit() -> None:
    took, outcome = fetch("/drip", total_seconds=2.0)
    assert isinstance(outcome, FetchError), outcome
    assert outcome.out_of_time and not outcome.transient
    assert "超过时限" in outcome.message, outcome.message
    assert 1.9 <= took < 3.5, took


def test_a_fast_start_buys_no_credit_for_a_drip_after_it() -> None:
    # 64 KiB at once, then a byte a second: an average since the start would allow a
    # minute of dripping at 1000 B/s; each window must bring its own quota.
    took, outcome = fetch("/burst-then-drip", min_bytes_per_second=1000, rate_window_seconds=1.0)
    assert isinstance(outcome, FetchError) and "速度过慢" in outcome.message, outcome
    assert took < 3.0, took


def test_headers_fed_slowly_count_against_the_window() -> None:
    took, outcome = fetch("/slow-headers", min_bytes_per_second=100, rate_window_seconds=1.0)
    assert isinstance(outcome, FetchError) and "速度过慢" in outcome.message, outcome
    assert took < 2.5, took


def test_redirect_hops_share_one_time_limit() -> None:
    # Four hops of 0.6 s each: each one alone is fast, together they pass 1.5 s.
    took, outcome = fetch("/hop0", total_seconds=1.5)
    assert isinstance(outcome, FetchError) and outcome.out_of_time, outcome
    assert took < 2.5, took


@pytest.mark.parametrize("floor", [0.0, 1024.0])
def test_a_healthy_download_passes_the_bounds(floor: float) -> None:
    took, outcome = fetch(
        "/fast", total_seconds=10.0, min_bytes_per_second=floor, rate_window_seconds=1.0
    )
    assert not isinstance(outcome, FetchError), outcome
    assert outcome.data == PICTURE  # type: ignore[attr-defined]
    assert took < 5.0, took
