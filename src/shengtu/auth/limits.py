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
import unicodedata
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis

from shengtu.auth.principal import Principal
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

    async def release(self, key: str, rate: Rate) -> None:
        """Give back one that was taken: it did not count after all."""

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

    async def release(self, key: str, rate: Rate) -> None:
        tat = self._tat.get(key)
        if tat is not None:
            self._tat[key] = tat - rate.interval

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
# KEYS[1]: the key; ARGV[1]: interval. Moves the arrival time back by one interval.
_GCRA_RELEASE = """
local tat = redis.call('GET', KEYS[1])
if tat then
  redis.call('SET', KEYS[1], string.format('%.6f', tonumber(tat) - tonumber(ARGV[1])), 'KEEPTTL')
end
return 0
"""


class RedisRates:
    def __init__(self, url: str) -> None:
        self._client = redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        self._script = self._client.register_script(_GCRA)
        self._release = self._client.register_script(_GCRA_RELEASE)

    async def acquire(self, key: str, rate: Rate, take: bool) -> float:
        wait = await self._script(
            keys=[f"shengtu:rate:{key}"], args=[rate.interval, rate.seconds, int(take)]
        )
        return float(wait)

    async def release(self, key: str, rate: Rate) -> None:
        await self._release(keys=[f"shengtu:rate:{key}"], args=[rate.interval])

    async def aclose(self) -> None:
        await self._client.aclose()


def _retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))


def throttle_name(username: str) -> str:
    """One throttle key per name however it is spelled: MySQL compares names without case,
    so ``Alice``, ``alice`` and a full-width ``ａｌｉｃｅ`` must share their count."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


Slots = list[tuple[Rate, str]]

_REDEEM = "兑换失败次数过多,请 {retry} 秒后再试"


@dataclass(frozen=True)
class RedeemTry:
    """What a redemption try took; ``refusal`` is set for a late check (one past the
    failure budget): the answer when its code turns out bad."""

    slots: Slots
    refusal: TooManyRequests | None


class RequestLimits:
    def __init__(self, settings: Settings) -> None:
        self._store: RateStore = (
            RedisRates(settings.redis_url) if settings.redis_url else MemoryRates()
        )
        window = settings.login_failure_window_seconds
        self._login = Rate(settings.login_failures_per_window, window)
        self._login_ip = Rate(settings.login_ip_failures_per_window, window)
        self._login_ok = Rate(settings.login_successes_per_window, window)
        self._login_ok_ip = Rate(settings.login_ip_successes_per_window, window)
        register_window = settings.register_window_seconds
        self._register_ip = Rate(settings.register_per_address, register_window)
        self._register_all = Rate(settings.register_total, register_window)
        redeem_window = settings.redeem_failure_window_seconds
        self._redeem = Rate(settings.redeem_failures_per_window, redeem_window)
        self._redeem_ip_new = Rate(settings.redeem_ip_failures_per_window, redeem_window)
        self._redeem_ip = Rate(settings.redeem_ip_established_failures_per_window, redeem_window)
        late = settings.redeem_late_checks_per_window
        self._redeem_late = Rate(late, redeem_window) if late else None
        per_user, per_key = settings.user_requests_per_minute, settings.api_key_requests_per_minute
        self._per_user = Rate(per_user, 60) if per_user else None
        self._per_key = Rate(per_key, 60) if per_key else None

    async def _wait(self, key: str, rate: Rate, take: bool) -> float:
        try:
            return await self._store.acquire(key, rate, take)
        except Exception as exc:  # Redis down: serve rather than refuse everyone.
            log.warning("rate_limit_unavailable", error=repr(exc)[:200])
            return 0.0

    async def _release(self, slots: Slots) -> None:
        for rate, key in slots:
            try:
                await self._store.release(key, rate)
            except Exception as exc:
                log.warning("rate_limit_unavailable", error=repr(exc)[:200])

    async def _take_all(self, slots: Slots, refusal: str) -> Slots:
        """Take one of each slot, atomically per slot; all or none: on a refusal the ones
        already taken are given back and 429 is raised (``refusal`` has ``{retry}``)."""
        taken: Slots = []
        for rate, key in slots:
            wait = await self._wait(key, rate, take=True)
            if wait > 0:
                await self._release(taken)
                retry = _retry_after(wait)
                raise TooManyRequests(refusal.format(retry=retry), retry_after=retry)
            taken.append((rate, key))
        return taken

    async def login_attempt(self, username: str, client: str) -> Slots:
        """Count a login attempt as a failure before its password is checked, so that
        parallel guesses cannot all slip in before the first is counted; a success gives
        it back (:meth:`login_succeeded`). 429 while the name or the address is over."""
        name = throttle_name(username)
        return await self._take_all(
            [(self._login, f"login-name:{name}"), (self._login_ip, f"login-ip:{client}")],
            "登录失败次数过多,请 {retry} 秒后再试",
        )

    async def login_succeeded(self, username: str, client: str, attempt: Slots) -> None:
        """The attempt was no failure; but successes are limited too (a stolen password
        must not mint tokens without end)."""
        await self._release(attempt)
        name = throttle_name(username)
        await self._take_all(
            [
                (self._login_ok, f"login-ok-name:{name}"),
                (self._login_ok_ip, f"login-ok-ip:{client}"),
            ],
            "登录过于频繁,请 {retry} 秒后再试",
        )

    async def redeem_attempt(self, user_id: int, client: str, *, new_account: bool) -> RedeemTry:
        """Like a login: counted as a failed try before the code is checked (so parallel
        guesses cannot all slip in), given back when the code was good
        (:meth:`redeem_succeeded`).

        A try takes one of the account's failures and one of its address's: of the pool of
        new accounts (``new_account``: cheap to make, so made to guess) or of the pool of
        older ones, so that new accounts behind one address cannot use up what its older
        accounts share. Past either, the try is still checked while the account has late
        checks left (a good code is not a guess, and must not be refused for the failures
        before it); a bad code then answers :attr:`RedeemTry.refusal`, the same whatever
        was wrong with it. Past those too: 429, unchecked."""
        pool = (
            (self._redeem_ip_new, f"redeem-ip-new:{client}")
            if new_account
            else (self._redeem_ip, f"redeem-ip-old:{client}")
        )
        try:
            slots = await self._take_all([(self._redeem, f"redeem-user:{user_id}"), pool], _REDEEM)
        except TooManyRequests as refused:
            late = self._redeem_late
            if late is None:
                raise
            slot = (late, f"redeem-late:{user_id}")
            if await self._wait(slot[1], late, take=True) > 0:
                raise
            return RedeemTry([slot], refused)
        return RedeemTry(slots, None)

    async def redeem_succeeded(self, attempt: RedeemTry) -> None:
        await self._release(attempt.slots)

    async def registration(self, client: str) -> None:
        """One sign-up from ``client``, within its address's share and everyone's."""
        await self._take_all(
            [(self._register_ip, f"register-ip:{client}"), (self._register_all, "register-all")],
            "注册过于频繁,请 {retry} 秒后再试",
        )

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
