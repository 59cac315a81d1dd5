"""The database as the events' source of truth: sweep the connected users' tasks.

Every few seconds (and at once after the Redis subscription comes back), an API
process reads the tasks of its connected users that changed since its last look and
delivers any state its clients have not seen. So a client connected to any process
sees every task's terminal state, whatever became of the messages on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from sqlalchemy import select

from shengtu.db import Database, utcnow
from shengtu.events.bus import EventBus
from shengtu.events.redis_bus import RedisEventBus
from shengtu.logs import get_logger
from shengtu.models.tasks import AiTask
from shengtu.tasks.schemas import task_detail, task_version

log = get_logger("shengtu.events")
CHUNK = 500
# Tasks are stamped by the clock of the process that wrote them; look back this much more.
CLOCK_MARGIN = timedelta(seconds=5)


class EventRelay:
    def __init__(self, db: Database, bus: EventBus, tz: str, interval: float) -> None:
        self.db = db
        self.bus = bus
        self.tz = tz
        self.interval = interval
        self._since: datetime = utcnow()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        reconnected = self.bus.reconnected if isinstance(self.bus, RedisEventBus) else None
        while True:
            if reconnected is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reconnected.wait(), self.interval)
                reconnected.clear()
            else:
                await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("event_sweep_failed")

    async def sweep(self) -> int:
        users = self.bus.subscribed_users()
        started = utcnow()
        since = self._since - CLOCK_MARGIN
        delivered = 0
        for i in range(0, len(users), CHUNK):
            async with self.db.read() as session:
                rows = await session.scalars(
                    select(AiTask).where(
                        AiTask.user_id.in_(users[i : i + CHUNK]), AiTask.updated_at >= since
                    )
                )
                for task in rows:
                    event = {
                        "event": "task.updated",
                        "data": task_detail(task, self.tz).model_dump(),
                    }
                    self.bus.deliver(task.user_id, event, task_version(task))
                    delivered += 1
        self._since = started
        return delivered
