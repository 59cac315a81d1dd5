"""Request-rate limits per user and per API key, and login-failure limits (memory, or Redis
when set, shared by every API process).

Tasks in flight are limited where the charge happens (tasks/service.py), inside the
transaction that locks the user's points row, so the count is exact.

Each limit is a cell rate (GCRA): "N per period" lets N through at once, then one more
every period/N, the same long-run rate as a moving window of the period. A key holds one
number, its theoretical arrival time, where a moving window holds a timestamp per request:
at a campaign's limits (millions per minute) that was millions of live objects in the API
process, and the garbage collector's full passes over them stalled every request for
100 ms and more.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis

from shengtu.accounts.service import Principal
from shengtu.config import Settings
from shengtu.errors import TooManyRequests
from shengtu.logs import get_logger

log = get_logger("shengtu.limits")

# Floating-point slack: N intervals of period/N may sum to a hair over the period.
_SLACK = 1e-6


@dataclass(frozen=True)
class Rate:
    amount: int
    seconds: float

    @property
    def interval(self) -> float:
        return self.seconds / self.amount


class RateStore(Protocol):
    async def acquire(self, key: str, rate: Rate, take: bool) -> float:
        """0 when one more is within ``rate`` now (and, with ``take``, counted);
        else the seconds until it would be."""

    async def aclose(self) -> None: ...


class MemoryRates:
    """For one process. Keys whose arrival time has passed are forgotten as the map grows."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._sweep_at = 10_000

    async def acquire(self, key: str, rate: Rate, take: bool) -> float:
        now = time.monotonic()
        arrival = max(self._tat.get(key, now), now) + rate.interval
        wait = arrival - now - rate.seconds
        if wait > _SLACK:
            return wait
        if take:
            self._tat[key] = arrival
            if len(self._tat) >= self._sweep_at:
                self._tat = {k: t for k, t in self._tat.items() if t > now}
                self._sweep_at = max(10_000, 2 * len(self._tat))
        return 0.0

    async def aclose(self) -> None:
        pass


# KEYS[1]: the key; ARGV: interval, period, take (1/0). Redis's clock, so that every
# process agrees. Returns the wait as a string (Lua numbers come back as integers).
_GCRA = """
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local arrival = tat + interval
local wait = arrival - now - period
if wait > 0.000001 then return tostring(wait) end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], string.format('%.6f', arrival), 'PX',
             math.ceil((arrival - now) * 1000) + 1000)
end
return '0'
"""


class RedisRates:
    def __init__(self, url: str) -> None:
        self._client = redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        self._script = self._client.register_script(_GCRA)

    async def acquire(self, key: str, rate: Rate, take: bool) -> float:
        wait = await self._script(
            keys=[f"shengtu:rate:{key}"], args=[rate.interval, rate.seconds, int(take)]
        )
        return float(wait)

    async def aclose(self) -> None:
        await self._client.aclose()


def _retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))


class RequestLimits:
    def __init__(self, settings: Settings) -> None:
        self._store: RateStore = (
            RedisRates(settings.redis_url) if settings.redis_url else MemoryRates()
        )
        window = settings.login_failure_window_seconds
        self._login = Rate(settings.login_failures_per_window, window)
        self._login_ip = Rate(settings.login_ip_failures_per_window, window)
        per_user, per_key = settings.user_requests_per_minute, settings.api_key_requests_per_minute
        self._per_user = Rate(per_user, 60) if per_user else None
        self._per_key = Rate(per_key, 60) if per_key else None

    async def _wait(self, key: str, rate: Rate, take: bool) -> float:
        try:
            return await self._store.acquire(key, rate, take)
        except Exception as exc:  # Redis down: serve rather than refuse everyone.
            log.warning("rate_limit_unavailable", error=repr(exc)[:200])
            return 0.0

    def _login_keys(self, username: str, client: str) -> list[tuple[Rate, str]]:
        return [(self._login, f"login-name:{username}"), (self._login_ip, f"login-ip:{client}")]

    async def login_allowed(self, username: str, client: str) -> None:
        """Refuse a login while this name or this address has failed too often lately."""
        for rate, key in self._login_keys(username, client):
            wait = await self._wait(key, rate, take=False)
            if wait > 0:
                retry = _retry_after(wait)
                raise TooManyRequests(f"登录失败次数过多,请 {retry} 秒后再试", retry_after=retry)

    async def login_failed(self, username: str, client: str) -> None:
        for rate, key in self._login_keys(username, client):
            await self._wait(key, rate, take=True)

    async def check(self, principal: Principal) -> None:
        checks = []
        if self._per_user is not None:
            checks.append((self._per_user, f"user:{principal.user_id}", "用户"))
        if self._per_key is not None and principal.api_key_id is not None:
            checks.append((self._per_key, f"key:{principal.api_key_id}", "API Key"))
        for rate, key, who in checks:
            wait = await self._wait(key, rate, take=True)
            if wait > 0:
                retry = _retry_after(wait)
                raise TooManyRequests(
                    f"请求过于频繁:该{who}每分钟最多 {rate.amount} 次请求,请 {retry} 秒后再试",
                    retry_after=retry,
                )

    async def aclose(self) -> None:
        await self._store.aclose()
