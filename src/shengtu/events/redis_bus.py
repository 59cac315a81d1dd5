"""Events and worker wake-ups between processes, over Redis pub/sub.

Redis holds nothing that matters: a lost message is found again by the relay's sweep
of the database, and a worker that misses a wake-up finds the task at its next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from shengtu.events.bus import EventBus
from shengtu.logs import get_logger

log = get_logger("shengtu.events")

EVENTS = "shengtu:events"
WAKEUP = "shengtu:wakeup"


class RedisEventBus(EventBus):
    delivers_inline = False

    def __init__(self, url: str, *, listen_events: bool, listen_wakeups: bool) -> None:
        super().__init__()
        self._client = redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        self._channels = [c for c, on in ((EVENTS, listen_events), (WAKEUP, listen_wakeups)) if on]
        self._listener: asyncio.Task[None] | None = None
        # Set whenever the subscription comes back after a loss: the relay sweeps at once.
        self.reconnected = asyncio.Event()

    async def start(self) -> None:
        if self._channels:
            self._listener = asyncio.create_task(self._listen())

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._client.aclose()

    async def publish(self, user_id: int, event: dict[str, Any], version: str) -> None:
        message = json.dumps({"u": user_id, "v": version, "e": event}, ensure_ascii=False)
        try:
            await self._client.publish(EVENTS, message)
        except (RedisError, OSError) as exc:
            # The relay's sweep will carry it to other processes; deliver here now.
            log.warning("redis_publish_failed", error=repr(exc)[:200])
            self.deliver(user_id, event, version)

    async def nudge_workers(self) -> None:
        self.wakeup.set()
        try:
            await self._client.publish(WAKEUP, b"1")
        except (RedisError, OSError) as exc:
            log.warning("redis_publish_failed", error=repr(exc)[:200])

    async def _listen(self) -> None:
        delay = 0.2
        lost = False
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._channels)
                if lost:
                    log.info("redis_subscription_restored")
                    self.reconnected.set()
                    self.wakeup.set()
                    lost = False
                delay = 0.2
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._handle(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if not lost:
                    log.warning("redis_subscription_lost", error=repr(exc)[:200])
                lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    # redis-py typed aclose() in 8.x; older releases leave it untyped.
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    def _handle(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if channel in (WAKEUP, WAKEUP.encode()):
            self.wakeup.set()
            return
        try:
            body = json.loads(message["data"])
            self.deliver(int(body["u"]), body["e"], str(body["v"]))
        except (ValueError, KeyError, TypeError):
            log.warning("redis_bad_event")
