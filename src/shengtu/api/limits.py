"""Request-rate limits per user and per API key (``limits``: memory, or Redis when set).

Tasks in flight are limited where the charge happens (tasks/service.py), inside the
transaction that locks the user's points row, so the count is exact.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from shengtu.accounts.service import Principal
from shengtu.config import Settings
from shengtu.errors import TooManyRequests
from shengtu.logs import get_logger

log = get_logger("shengtu.limits")


class RequestLimits:
    def __init__(self, settings: Settings) -> None:
        storage: Storage
        if settings.redis_url:
            uri = (
                "async+" + settings.redis_url
                if not settings.redis_url.startswith("async+")
                else settings.redis_url
            )
            storage = RedisStorage(uri, implementation="redispy", key_prefix="shengtu")
        else:
            storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)
        self._login: RateLimitItem = RateLimitItemPerSecond(
            settings.login_failures_per_window, settings.login_failure_window_seconds
        )
        self._login_ip: RateLimitItem = RateLimitItemPerSecond(
            settings.login_ip_failures_per_window, settings.login_failure_window_seconds
        )
        self._per_user = (
            RateLimitItemPerMinute(settings.user_requests_per_minute)
            if settings.user_requests_per_minute
            else None
        )
        self._per_key = (
            RateLimitItemPerMinute(settings.api_key_requests_per_minute)
            if settings.api_key_requests_per_minute
            else None
        )

    def _login_keys(self, username: str, client: str) -> list[tuple[RateLimitItem, str]]:
        return [(self._login, f"login-name:{username}"), (self._login_ip, f"login-ip:{client}")]

    async def login_allowed(self, username: str, client: str) -> None:
        """Refuse a login while this name or this address has failed too often lately."""
        for item, key in self._login_keys(username, client):
            try:
                if await self._limiter.test(item, key):
                    continue
                stats = await self._limiter.get_window_stats(item, key)
            except Exception as exc:
                log.warning("rate_limit_unavailable", error=repr(exc)[:200])
                return
            retry = max(1, math.ceil(stats.reset_time - time.time()))
            raise TooManyRequests(f"登录失败次数过多,请 {retry} 秒后再试", retry_after=retry)

    async def login_failed(self, username: str, client: str) -> None:
        for item, key in self._login_keys(username, client):
            try:
                await self._limiter.hit(item, key)
            except Exception as exc:
                log.warning("rate_limit_unavailable", error=repr(exc)[:200])

    async def check(self, principal: Principal) -> None:
        checks = []
        if self._per_user is not None:
            checks.append((self._per_user, f"user:{principal.user.id}", "用户"))
        if self._per_key is not None and principal.api_key_id is not None:
            checks.append((self._per_key, f"key:{principal.api_key_id}", "API Key"))
        for item, key, who in checks:
            try:
                allowed = await self._limiter.hit(item, key)
                if allowed:
                    continue
                stats = await self._limiter.get_window_stats(item, key)
            except Exception as exc:  # Redis down: serve rather than refuse everyone.
                log.warning("rate_limit_unavailable", error=repr(exc)[:200])
                return
            retry = max(1, math.ceil(stats.reset_time - time.time()))
            raise TooManyRequests(
                f"请求过于频繁:该{who}每分钟最多 {item.amount} 次请求,请 {retry} 秒后再试",
                retry_after=retry,
            )
