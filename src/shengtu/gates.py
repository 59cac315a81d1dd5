"""Bounded CPU- and memory-heavy work in threads: a password hash, a picture's decode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

from shengtu.errors import ServiceUnavailable

T = TypeVar("T")


class Gate:
    """At most ``slots`` calls at once in this process, each in a worker thread; the rest
    wait their turn up to ``wait`` seconds, then get 503 with ``busy``. Unbounded, such
    work piles up under a flood (an argon2 hash holds ~64 MiB and a core for ~0.1 s, a
    decoded picture up to 64 MiB) until the process runs out of memory."""

    def __init__(self, slots: int, wait: float, busy: str) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._wait = wait
        self._busy = busy

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        async with self.slot():
            return await anyio.to_thread.run_sync(fn, *args)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the slots, for work the caller sends to a thread itself."""
        try:
            # A timeout scope, not wait_for: no task of its own per wait.
            async with asyncio.timeout(self._wait):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise ServiceUnavailable(self._busy) from exc
        try:
            yield
        finally:
            self._slots.release()
