"""The late-result watch: a task failed at its deadline (and refunded) while its upstream
job ran on; for a while (SHENGTU_LATE_WATCH_HOURS) the job is asked about now and then,
and a picture it still delivers is stored and offered to the user as a late result."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update

from shengtu.channels import service as channel_service
from shengtu.context import AppContext
from shengtu.db import utcnow
from shengtu.exchanges.service import ExchangeRecorder
from shengtu.logs import get_logger
from shengtu.models.tasks import AiTask, Status
from shengtu.providers.base import UpstreamError
from shengtu.storage.fetch import FetchError
from shengtu.storage.images import NotAnImage
from shengtu.tasks.moves import Moves
from shengtu.tasks.results import Results, provider_of
from shengtu.webhooks import outbox

log = get_logger("shengtu.worker")


class LateWatch:
    """The watch, run by every worker now and then (safe while others run it too)."""

    def __init__(
        self, ctx: AppContext, moves: Moves, results: Results, exchanges: ExchangeRecorder
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.moves = moves
        self.results = results
        self.exchanges = exchanges

    @property
    def enabled(self) -> bool:
        return self.settings.late_results

    @property
    def interval(self) -> float:
        return min(5.0, self.settings.late_poll_seconds)

    async def columns(self, task: AiTask, now: datetime) -> dict[str, Any]:
        """For a task failing at its deadline while its upstream job runs on: the columns
        that have the late sweep ask about the job for a while (the setting allows)."""
        if not self.settings.late_results or not task.upstream_id:
            return {}
        provider = await provider_of(self.ctx, task)
        if provider is None or not provider.polls:
            return {}
        return {
            "late_until": now + timedelta(hours=self.settings.late_watch_hours),
            "late_next_at": now + timedelta(seconds=self.settings.late_poll_seconds),
        }

    async def watch(self) -> None:
        """One turn: ask about the upstream jobs of failed tasks that may still deliver."""
        try:
            for task in await self._claim():
                structlog.contextvars.bind_contextvars(task_no=task.task_no)
                try:
                    await self._ask(task)
                except Exception:
                    log.exception("late_result_check_failed")
                finally:
                    structlog.contextvars.unbind_contextvars("task_no")
        except Exception:
            log.exception("late_watch_failed")

    async def _claim(self) -> list[AiTask]:
        """Failed tasks due for a late question; each claimed by moving its next question
        on with a guarded UPDATE, so of racing workers one asks."""
        now = utcnow()
        async with self.ctx.db.read() as session:
            due = list(
                await session.scalars(
                    select(AiTask)
                    .where(AiTask.late_next_at <= now, AiTask.status == Status.FAILED.value)
                    .order_by(AiTask.late_next_at)
                    .limit(50)
                )
            )
        claimed: list[AiTask] = []
        later = now + timedelta(seconds=self.settings.late_poll_seconds)
        if not due:
            return claimed
        async with self.ctx.db.write() as session:
            for task in due:
                watching = task.late_until is not None and task.late_until > now
                result = await session.execute(
                    update(AiTask)
                    .where(AiTask.id == task.id, AiTask.late_next_at == task.late_next_at)
                    .values(
                        late_next_at=later if watching else None,
                        late_until=task.late_until if watching else None,
                    )
                )
                if getattr(result, "rowcount", 0) == 1 and watching:
                    claimed.append(task)
        return claimed

    async def _stop_watching(self, task: AiTask) -> None:
        async with self.ctx.db.write() as session:
            await session.execute(
                update(AiTask)
                .where(AiTask.id == task.id)
                .values(late_until=None, late_next_at=None)
            )

    async def _ask(self, task: AiTask) -> None:
        provider = await provider_of(self.ctx, task)
        if provider is None or task.upstream_id is None:
            await self._stop_watching(task)
            return
        try:
            with self.exchanges.recording(
                task, "late_poll", channel_id=task.channel_id, key_id=task.channel_key_id
            ):
                state = await provider.poll(task.upstream_id, task.task_no)
        except UpstreamError as exc:
            if not exc.transient:
                await self._stop_watching(task)
            return  # asked again at the next turn
        if state.phase == "failed":
            await self._stop_watching(task)
            return
        if state.phase != "succeeded":
            return
        upstream_url = state.result_urls[0] if state.result_urls else None
        try:
            if state.pictures:
                # The picture came inline: nothing to download.
                key = (await self.results.store(task, state.pictures[0])).key
            elif upstream_url is None:
                await self._stop_watching(task)
                return
            else:
                # Past the task's deadline: a late copy gets as long as a task does.
                key = (
                    await self.results.fetch(
                        task, upstream_url, provider, self.settings.task_deadline
                    )
                ).key
        except FetchError as exc:
            if not exc.transient and not exc.out_of_time:
                await self._stop_watching(task)
            return
        except NotAnImage:
            await self._stop_watching(task)
            return
        url = self.ctx.storage.url(key)
        now = utcnow()
        async with self.ctx.db.write() as session:
            result = await session.execute(
                update(AiTask)
                .where(
                    AiTask.id == task.id,
                    AiTask.status == Status.FAILED.value,
                    AiTask.late_result_url.is_(None),
                )
                .values(
                    late_result_url=url,
                    result_key=key,
                    upstream_result_url=upstream_url,
                    labels=self.results.label(task).carried(),
                    late_until=None,
                    late_next_at=None,
                    updated_at=now,
                )
            )
            stored = getattr(result, "rowcount", 0) == 1
            if stored and task.channel_id is not None:
                await channel_service.count(session, task.channel_id, "late_count")
            if stored:
                await outbox.enqueue(session, task, outbox.LATE_RESULT)
        if not stored:
            await self.ctx.storage.delete(key)
            return
        log.info("late_result_stored", channel_id=task.channel_id)
        task.late_result_url, task.result_key, task.updated_at = url, key, now
        await self.moves.announce(task, "task.late_result")
