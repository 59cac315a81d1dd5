"""What every kind of step writes at its end: a move of its task guarded by status and
lease (with the rows that led to it), a failure, a retry later, and the event."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from shengtu.context import AppContext
from shengtu.db import Base, Conn, add, utcnow
from shengtu.logs import get_logger
from shengtu.models.tasks import AiTask, Status
from shengtu.tasks.deadlines import hold_off_step_bound
from shengtu.tasks.machine import move
from shengtu.tasks.schemas import task_detail, task_version

log = get_logger("shengtu.worker")

MAX_BACKOFF = 60.0

# Statements run in a move's transaction once the move has won (a key's breaker reset).
OnMoved = Callable[[Conn], Awaitable[None]]


class Moves:
    """The writes every step ends with, as the worker ``owner`` holding its tasks' leases."""

    def __init__(self, ctx: AppContext, owner: str) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.owner = owner

    def clamp(self, task: AiTask, when: datetime) -> datetime:
        return min(when, task.deadline_at)

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        delay: float = min(MAX_BACKOFF, self.settings.poll_interval * 2.0 ** min(attempts, 10))
        return max(delay, retry_after or 0.0)

    async def retry(self, task: AiTask, reason: str, retry_after: float | None) -> None:
        delay = self.backoff(task.attempts, retry_after)
        log.warning(
            "step_retry",
            status=task.status,
            attempts=task.attempts + 1,
            delay=round(delay, 2),
            reason=reason,
        )
        await self.move(
            task,
            Status(task.status),
            attempts=task.attempts + 1,
            last_error=reason[:500],
            next_run_at=self.clamp(task, utcnow() + timedelta(seconds=delay)),
        )

    async def reschedule(self, task: AiTask, reason: str) -> None:
        try:
            await self.retry(task, reason, None)
        except Exception:
            log.exception("reschedule_failed")

    async def fail(
        self, task: AiTask, message: str, *, also: Sequence[Base] = (), **values: Any
    ) -> None:
        log.warning("task_failed", reason=message)
        await self.move(task, Status.FAILED, also=also, error_message=message[:1000], **values)

    async def move(
        self,
        task: AiTask,
        target: Status,
        *,
        also: Sequence[Base] = (),
        on_moved: OnMoved | None = None,
        **values: Any,
    ) -> bool:
        """``also``: rows written in the same transaction (the attempt that led here);
        ``on_moved``: statements of the same transaction, run if the move won."""
        hold_off_step_bound()
        before = (task.status, task.progress)
        async with self.ctx.db.transaction() as session:
            for row in also:
                await add(session, row)
            moved = await move(session, task, target, lease_owner=self.owner, **values)
            if moved is not None and on_moved is not None:
                await on_moved(session)
        if moved is None:
            log.warning("lease_lost", status=task.status, target=target.value)
            return False
        if (moved.status, moved.progress) != before:
            log.info("task_moved", status=moved.status, progress=moved.progress)
            await self.announce(moved)
        return True

    async def announce(self, task: AiTask, event: str = "task.updated") -> None:
        detail = task_detail(task, self.settings.timezone)
        await self.ctx.bus.publish(
            task.user_id, {"event": event, "data": detail.model_dump()}, task_version(task)
        )
