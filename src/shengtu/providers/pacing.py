"""Pacing of calls to one upstream key: at most ``rps`` a second, submits and polls together.

Each call reserves the next free slot and sleeps until it: no burst, and a queue of
waiters costs one wake-up each, not a stampede every time a slot frees. An upstream counts
what *arrives* in each of its seconds, and a call arrives a little after its slot (a busy
event loop, the network): a call from the end of one second can land in the next. So the
slots are ``(1 + jitter) / rps`` apart, and calls up to ``jitter`` seconds late still
leave at most ``rps`` in any second (measured: at exact 1/rps spacing, 4 workers on a
loaded machine put 21 calls into one second of a 20/s key).

The slots live in this process, or in Redis when it is configured: then every worker
process shares one schedule per key, and four workers on a 20-a-second key send 20 a
second between them, not 80. The Redis name of a key is a digest of the key itself, so two
channels holding the same upstream key share its pace. When Redis cannot be reached, a
call is paced in this process alone (and says so in the log) rather than not sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from shengtu.logs import get_logger

log = get_logger("shengtu.pacing")


class Pacer(Protocol):
    async def wait(self) -> None:
        """Returns when this call may go."""


# How late a call may arrive after its slot and still not crowd the next second.
DEFAULT_JITTER = 0.1


class LocalPacer:
    def __init__(self, rps: float, jitter: float = DEFAULT_JITTER) -> None:
        self.interval = (1.0 + jitter) / rps
        self._next = 0.0

    def reserve(self) -> float:
        """Seconds until this call's slot (sync: no other call can interleave)."""
        now = time.monotonic()
        slot = max(self._next, now)
        self._next = slot + self.interval
        return slot - now

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


# KEYS[1]: the key's schedule; ARGV[1]: the interval. Redis's clock, which every process
# shares. Returns the wait as a string (Lua numbers come back as integers).
_RESERVE = """
local interval = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local after = slot + interval
redis.call('SET', KEYS[1], string.format('%.6f', after), 'PX',
           math.ceil((after - now) * 1000) + 1000)
return tostring(slot - now)
"""


class RedisPacer:
    def __init__(self, client: redis.Redis, name: str, rps: float, jitter: float) -> None:
        self._client = client
        self._name = name
        self._script = client.register_script(_RESERVE)
        self._fallback = LocalPacer(rps, jitter)

    async def wait(self) -> None:
        try:
            delay = float(await self._script(keys=[self._name], args=[self._fallback.interval]))
        except (RedisError, OSError) as exc:
            log.warning("pacing_redis_unavailable", error=type(exc).__name__)
            delay = self._fallback.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


class Pacing:
    """Makes the pacer of each upstream key: shared through Redis when ``redis_url`` is set."""

    def __init__(self, redis_url: str = "", jitter: float = DEFAULT_JITTER) -> None:
        self._jitter = jitter
        self._client = (
            redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3)
            if redis_url
            else None
        )

    def pacer(self, api_key: str, rps: float) -> Pacer:
        if self._client is None:
            return LocalPacer(rps, self._jitter)
        digest = hashlib.sha256(b"shengtu-pacing:" + api_key.encode()).hexdigest()[:24]
        return RedisPacer(self._client, f"shengtu:pace:{digest}", rps, self._jitter)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
