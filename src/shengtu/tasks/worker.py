"""The worker: a loop of short, idempotent steps on task rows.

Claim due rows under a lease, do one step (send upstream, poll upstream, copy the
result), write the new state with a move guarded by status and lease, release. A
crashed worker's leases expire and any worker carries on from the last written state.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import Integer, bindparam, or_, select, update

from shengtu import metrics
from shengtu.channels import service as channel_service
from shengtu.channels.bootstrap import sync_env_channel
from shengtu.channels.pool import Route
from shengtu.context import AppContext
from shengtu.db import Base, UtcDateTime, add, columns_of, loaded, run, utcnow
from shengtu.idempotency import jobs as idempotency_jobs
from shengtu.logs import get_logger
from shengtu.models.channels import TaskAttempt
from shengtu.models.tasks import ACTIVE_SQL, AiTask, Status
from shengtu.providers.base import (
    Cancellable,
    Provider,
    UpstreamError,
    UpstreamJob,
    UpstreamState,
)
from shengtu.stats import jobs as stats_jobs
from shengtu.storage import jobs as storage_jobs
from shengtu.storage.base import Stored
from shengtu.storage.fetch import FetchError, fetch_image_bytes
from shengtu.storage.images import NotAnImage, checked, sniff_image
from shengtu.tasks.handoff import Lease
from shengtu.tasks.machine import move
from shengtu.tasks.schemas import task_detail, task_version
from shengtu.timefmt import local
from shengtu.webhooks import outbox
from shengtu.webhooks.dispatcher import Dispatcher

log = get_logger("shengtu.worker")

MAX_BACKOFF = 60.0
# Every capability's periodic work, run in turn every SHENGTU_SWEEP_INTERVAL_SECONDS (the
# webhooks' own runs in their dispatcher, which runs wherever a worker does).
PERIODIC_JOBS = (*storage_jobs.JOBS, *stats_jobs.JOBS, *idempotency_jobs.JOBS)
QUEUED_PROGRESS = 5
# Every call a step makes to the outside (the upstream, a download) ends at its task's
# deadline. The step as a whole gets this much more, for its own work (the decoder's
# queue waits up to 30 s) before it is cut too: a step must never hang while the
# heartbeat keeps its lease alive.
STEP_OVERRUN_SECONDS = 30.0
# The whole step's bound, while it runs; held off once the step writes its outcome.
_STEP_BOUND: contextvars.ContextVar[asyncio.Timeout | None] = contextvars.ContextVar(
    "step_bound", default=None
)


class Overran(Exception):
    """A step still waiting at its task's deadline. ``submit``: the submit that was in
    flight ((route, started, clock)): the upstream may have accepted it."""

    def __init__(
        self, message: str, submit: tuple[Route | None, datetime, float] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.submit = submit


def seconds_left(task: AiTask) -> float:
    return (task.deadline_at - utcnow()).total_seconds()


def _hold_off_step_bound() -> None:
    """The step is writing its outcome: not cut in the middle of that write (a picture
    stored and its task's completion committed, but the step thinking it failed)."""
    bound = _STEP_BOUND.get()
    if bound is not None and not bound.expired():
        bound.reschedule(None)


def _attempt(
    task: AiTask,
    route: Route | None,
    outcome: str,
    started: datetime,
    clock: float,
    exc: UpstreamError | None = None,
) -> TaskAttempt:
    latency = time.perf_counter() - clock
    metrics.upstream_attempt(route.channel_id if route else None, outcome, latency)
    return TaskAttempt(
        task_id=task.id,
        channel_id=route.channel_id if route else None,
        key_id=route.key_id if route else None,
        outcome=outcome,
        http_status=exc.http_status if exc else None,
        latency_ms=round(latency * 1000, 1),
        error=exc.message[:500] if exc else None,
        started_at=started,
        ended_at=utcnow(),
    )


def estimate_progress(task: AiTask, reported: int | None, now: datetime, expected: float) -> int:
    """Upstream's own figure when it gives one, else an estimate from the time elapsed.

    Never goes backwards and never reaches 100 before the picture is stored.
    """
    if reported is not None:
        value = reported
    else:
        elapsed = (now - (task.submitted_at or task.created_at)).total_seconds()
        value = int(10 + 89 * (1 - math.exp(-max(0.0, elapsed) / expected)))
    return max(task.progress, min(99, value))


# Due: active, its time come, and no live lease. Built once (``shengtu.db.run``).
_NOW = bindparam("now", type_=UtcDateTime)
_UNLEASED = or_(AiTask.lease_until.is_(None), AiTask.lease_until < _NOW)
_DUE = (
    select(AiTask.id)
    .where(AiTask.status.in_(ACTIVE_SQL), AiTask.next_run_at <= _NOW, _UNLEASED)
    .order_by(AiTask.next_run_at)
    .limit(bindparam("n", type_=Integer))
)
_DUE_LOCKED = _DUE.with_for_update(skip_locked=True)
_LEASE = (
    update(AiTask)
    .where(AiTask.id == bindparam("task_id"), _UNLEASED)
    # Not due again before its lease ends (the step's move sets the next time): the due
    # scan then skips the tasks in flight instead of reading each one's lease.
    .values(
        lease_owner=bindparam("owner"),
        lease_until=bindparam("until", type_=UtcDateTime),
        next_run_at=bindparam("until", type_=UtcDateTime),
    )
)
_LEASED = columns_of(AiTask).where(AiTask.id == bindparam("task_id"))


class Worker:
    def __init__(self, ctx: AppContext, owner: str | None = None) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._inflight: set[int] = set()
        self._reserved = 0
        self._steps: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        # Results are copied on one connection pool, reference pictures (from URLs a user
        # gave) fetched on another: a user's slow reference server cannot hold the
        # connections every user's result copies need.
        self._http = self._fetcher(self.settings.fetch_connections)
        self._references = self._fetcher(self.settings.reference_fetch_connections)
        self.steps_done = 0
        # Set when every slot is busy: the loop then waits for a quarter of them to free
        # up (not for the next tick), so throughput isn't capped at one batch per tick.
        self._full = False
        self._refill_at = max(
            1, min(self.settings.worker_batch, self.settings.worker_concurrency) // 4
        )
        self._backlog = False
        self._sweep_at = 0.0
        self._sweeper: asyncio.Task[None] | None = None
        self._late_at = 0.0
        self._late_watcher: asyncio.Task[None] | None = None
        # Webhook deliveries run wherever a worker runs.
        self.webhooks = Dispatcher(
            ctx, lambda task: task_detail(task, ctx.settings.timezone).model_dump()
        )

    @staticmethod
    def _fetcher(connections: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, connect=10.0),
            headers={"User-Agent": "Shengtu/0.1"},
            limits=httpx.Limits(
                max_connections=connections, max_keepalive_connections=min(20, connections)
            ),
        )

    def _pace(self, total: float | None) -> dict[str, Any]:
        """A download's bounds: ``total`` seconds, and the settings' floor on its rate."""
        return {
            "total_seconds": total,
            "min_bytes_per_second": self.settings.fetch_min_bytes_per_second,
            "rate_window_seconds": self.settings.fetch_rate_grace_seconds,
        }

    @property
    def tick(self) -> float:
        # Short: tasks fall due one by one, and a claim each tick takes what fell due since
        # the last. At a 1 s tick, one worker tracking 640 tasks at a 5 s interval ran ~130
        # steps in one burst each second, and the API requests sharing its process waited
        # behind the burst (p99 200 ms instead of 20). An idle tick is one indexed read.
        return max(0.05, min(0.1, self.settings.poll_interval / 2))

    def stop(self) -> None:
        self._stop.set()
        self.ctx.bus.wakeup.set()

    async def run(self) -> None:
        log.info("worker_started", owner=self.owner, concurrency=self.settings.worker_concurrency)
        try:
            await sync_env_channel(self.ctx)
        except Exception:
            log.exception("channel_sync_failed")
        heartbeat = asyncio.create_task(self._keep_leases())
        deliveries = asyncio.create_task(self.webhooks.run())
        try:
            while not self._stop.is_set():
                try:
                    claimed = await self.claim()
                except Exception:
                    log.exception("claim_failed")
                    await asyncio.sleep(1.0)
                    continue
                for task in claimed:
                    self._spawn(task)
                self._maybe_sweep()
                self._maybe_watch_late()
                if claimed and self._capacity() > 0:
                    continue
                self._full = self._capacity() <= 0
                await self._idle()
        finally:
            heartbeat.cancel()
            self.webhooks.stop()
            await deliveries
            for background in (self._sweeper, self._late_watcher):
                if background is not None:
                    background.cancel()
            if self._steps:
                await asyncio.wait(self._steps, timeout=10)
            await self._http.aclose()
            await self._references.aclose()
            log.info("worker_stopped", owner=self.owner)

    async def _keep_leases(self) -> None:
        """While a step runs, its task's lease is kept alive: a step slower than the lease
        (a long upstream call, a queue for the decoder) must not let another worker take
        the task and call the upstream again. A killed worker stops renewing, and its
        leases run out as before."""
        period = max(0.2, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(period)
            ids = list(self._inflight)
            if not ids:
                continue
            until = utcnow() + timedelta(seconds=self.settings.lease_seconds)
            try:
                async with self.ctx.db.write() as session:
                    for start in range(0, len(ids), 500):
                        await session.execute(
                            update(AiTask)
                            .where(
                                AiTask.id.in_(ids[start : start + 500]),
                                AiTask.lease_owner == self.owner,
                            )
                            .values(lease_until=until)
                        )
            except Exception:
                log.exception("lease_renewal_failed")

    def _maybe_sweep(self) -> None:
        """Now and then, in the background: the capabilities' periodic jobs
        (PERIODIC_JOBS; each is safe while other workers run it too)."""
        now = time.monotonic()
        if now < self._sweep_at or (self._sweeper is not None and not self._sweeper.done()):
            return
        self._sweep_at = now + self.settings.sweep_interval_seconds
        self._sweeper = asyncio.create_task(self._sweep())

    def _maybe_watch_late(self) -> None:
        """Now and then, in the background: ask about the upstream jobs of failed tasks
        that may still deliver (see :meth:`_late_watch`)."""
        now = time.monotonic()
        if not self.settings.late_results or now < self._late_at:
            return
        if self._late_watcher is not None and not self._late_watcher.done():
            return
        self._late_at = now + min(5.0, self.settings.late_poll_seconds)
        self._late_watcher = asyncio.create_task(self._watch_late())

    async def _watch_late(self) -> None:
        try:
            for task in await self._claim_late():
                structlog.contextvars.bind_contextvars(task_no=task.task_no)
                try:
                    await self._ask_late(task)
                except Exception:
                    log.exception("late_result_check_failed")
                finally:
                    structlog.contextvars.unbind_contextvars("task_no")
        except Exception:
            log.exception("late_watch_failed")

    async def _claim_late(self) -> list[AiTask]:
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

    async def _ask_late(self, task: AiTask) -> None:
        provider = await self._provider_of(task)
        if provider is None or task.upstream_id is None:
            await self._stop_watching(task)
            return
        try:
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
        try:
            # Past the task's deadline: a late copy gets as long as a task does.
            key = (
                await self._fetch_result(
                    task, state.result_urls[0], provider, self.settings.task_deadline
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
                    upstream_result_url=state.result_urls[0],
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
        await self._announce(task, "task.late_result")

    async def _sweep(self) -> None:
        for job in PERIODIC_JOBS:
            try:
                await job.run(self.ctx)
            except Exception:
                log.exception("periodic_job_failed", job=job.name)

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ctx.bus.wakeup.wait(), self.tick)
        self.ctx.bus.wakeup.clear()

    def _capacity(self) -> int:
        return self.settings.worker_concurrency - len(self._inflight) - self._reserved

    # -- new tasks from this process's submits (shengtu.tasks.handoff) ------------------

    def reserve(self, count: int) -> Lease | None:
        if self._stop.is_set() or self._capacity() < count:
            return None
        self._reserved += count
        return Lease(self.owner, utcnow() + timedelta(seconds=self.settings.lease_seconds))

    def release(self, count: int) -> None:
        self._reserved -= count

    def take(self, tasks: Sequence[AiTask]) -> None:
        self._reserved -= len(tasks)
        for task in tasks:
            self._spawn(task)

    def _spawn(self, task: AiTask) -> None:
        self._inflight.add(task.id)
        step = asyncio.create_task(self._run_step(task))
        self._steps.add(step)
        step.add_done_callback(self._steps.discard)

    async def claim(self) -> list[AiTask]:
        """Lease up to the free capacity of due tasks; None of them leased by a live worker."""
        limit = min(self._capacity(), self.settings.worker_batch)
        if limit <= 0:
            return []
        db = self.ctx.db
        now = utcnow()
        # Never a second step on a task this worker is still stepping: two would both call
        # the upstream (a submit twice is a job paid for twice). Its own are read and left.
        params = {"now": now, "n": limit + len(self._inflight)}

        def free(rows: Sequence[tuple[Any, ...]]) -> list[int]:
            return [r[0] for r in rows if r[0] not in self._inflight][:limit]

        # A read first, unless the last claim filled its batch (there is more, likely):
        # an idle worker never takes the write lock.
        if not self._backlog and not free(await db.all(_DUE, params)):
            return []
        due = _DUE_LOCKED if db.dialect in ("postgresql", "mysql", "mariadb") else _DUE
        until = now + timedelta(seconds=self.settings.lease_seconds)
        claimed: list[AiTask] = []
        async with db.transaction() as session:
            for task_id in free((await run(session, due, params)).rows):
                lease = {"task_id": task_id, "now": now, "owner": self.owner, "until": until}
                if (await run(session, _LEASE, lease)).rowcount == 1:
                    row = (await run(session, _LEASED, lease)).first()
                    if row is not None:
                        claimed.append(loaded(AiTask, row))
        self._backlog = len(claimed) == limit
        return claimed

    async def _run_step(self, task: AiTask) -> None:
        structlog.contextvars.bind_contextvars(task_no=task.task_no)
        try:
            try:
                async with self._step_bound(task):
                    await self.step(task)
            except Overran as over:
                await self._overran(task, over)
        except Exception as exc:
            log.exception("step_crashed", status=task.status)
            # A bug must not spin: back off, and the deadline still ends the task.
            await self._reschedule(task, f"内部错误: {type(exc).__name__}")
        finally:
            self._inflight.discard(task.id)
            self.steps_done += 1
            if self._full and self._capacity() >= self._refill_at:
                self._full = False
                self.ctx.bus.wakeup.set()
            structlog.contextvars.unbind_contextvars("task_no")

    @contextlib.asynccontextmanager
    async def _step_bound(self, task: AiTask) -> AsyncIterator[None]:
        """The step's backstop: cut at the deadline plus STEP_OVERRUN_SECONDS."""
        # A submit may run its own timeout past the deadline (_by_deadline's at_least).
        backstop = max(0.0, seconds_left(task)) + self.settings.upstream_timeout
        try:
            async with asyncio.timeout(backstop + STEP_OVERRUN_SECONDS) as bound:
                token = _STEP_BOUND.set(bound)
                try:
                    yield
                finally:
                    _STEP_BOUND.reset(token)
        except TimeoutError as exc:
            if not bound.expired():
                raise
            log.error("step_hung", status=task.status)
            raise Overran(self._deadline_reason(task)) from exc

    @contextlib.asynccontextmanager
    async def _by_deadline(
        self,
        task: AiTask,
        submit: tuple[Route | None, datetime, float] | None = None,
        at_least: float = 0.0,
    ) -> AsyncIterator[None]:
        """A call to the upstream, ended at the task's deadline (Overran), or after
        ``at_least`` seconds if that is later."""
        try:
            async with asyncio.timeout(max(at_least, seconds_left(task))) as bound:
                yield
        except TimeoutError as exc:
            if not bound.expired():
                raise
            if submit is not None:
                raise Overran(
                    f"任务超时:提交上游的请求在任务时限({int(self.settings.task_deadline)} 秒)"
                    "内未得到回答,无法确认上游是否已接受任务;为避免重复生成,任务不再重试",
                    submit,
                ) from exc
            raise Overran(self._deadline_reason(task)) from exc

    def _deadline_reason(self, task: AiTask) -> str:
        reason = f"任务超时:上游在 {int(self.settings.task_deadline)} 秒内未完成"
        if task.last_error:
            reason += f"(最近一次错误:{task.last_error})"
        return reason

    def _download_overran(self, what: str) -> Overran:
        return Overran(
            f"任务超时:{what}在任务时限({int(self.settings.task_deadline)} 秒)内未能下载完成"
        )

    async def _overran(self, task: AiTask, over: Overran) -> None:
        """The task's deadline came while its step waited: it fails (and is refunded) now,
        not when the wait ends. A submit in flight may have started a job upstream: the
        attempt is recorded as uncertain, and the task is never sent again."""
        log.warning("step_overran", status=task.status, submitting=over.submit is not None)
        if over.submit is None:
            await self.fail(task, over.message, **await self._late_watch(task, utcnow()))
            return
        route, started, clock = over.submit
        lost = UpstreamError("任务时限已到,上游仍未回答", transient=True, uncertain=True)
        attempt = _attempt(task, route, "uncertain", started, clock, lost)
        if route is not None:
            async with self.ctx.db.write() as session:
                await channel_service.count(session, route.channel_id, "uncertain_count")
        await self.fail(
            task,
            over.message,
            also=(attempt,),
            upstream_status="uncertain",
            channel_id=route.channel_id if route else None,
            channel_key_id=route.key_id if route else None,
        )

    async def _provider_of(self, task: AiTask) -> Provider | None:
        """The provider a task the upstream accepted is polled through."""
        if task.channel_key_id is not None:
            await self.ctx.channels.refresh()
            return self.ctx.channels.provider(task.channel_key_id)
        return self.ctx.providers.get(task.provider)

    async def step(self, task: AiTask) -> None:
        now = utcnow()
        if now >= task.deadline_at:
            await self.fail(task, self._deadline_reason(task), **await self._late_watch(task, now))
            return
        if task.status == Status.CREATED:
            await self._submit(task)
            return
        provider = await self._provider_of(task)
        if provider is not None and task.cancel_requested_at is not None:
            await self._cancel_upstream(task, provider)
            return
        if provider is None:
            await self.fail(task, "受理该任务的上游渠道或密钥已被删除,无法查询结果")
            return
        if task.upstream_result_url and task.upstream_id:
            # The upstream answered the submit with the picture's address (a protocol
            # with nothing to poll): only the copy is left to do, and to retry.
            done = UpstreamState(
                task.upstream_id, "succeeded", "completed", 100, (task.upstream_result_url,)
            )
            await self._store_result(task, provider, done, {"poll_count": task.poll_count})
            return
        await self._poll(task, provider)

    async def _late_watch(self, task: AiTask, now: datetime) -> dict[str, Any]:
        """For a task failing at its deadline while its upstream job runs on: the columns
        that have the late sweep ask about the job for a while (the setting allows)."""
        if not self.settings.late_results or not task.upstream_id:
            return {}
        provider = await self._provider_of(task)
        if provider is None or not provider.polls:
            return {}
        return {
            "late_until": now + timedelta(hours=self.settings.late_watch_hours),
            "late_next_at": now + timedelta(seconds=self.settings.late_poll_seconds),
        }

    async def _cancel_upstream(self, task: AiTask, provider: Provider) -> None:
        """A user's cancel of a task this upstream can stop: passed on, then the task fails
        with its points back; if the picture was done already, the user gets it."""
        assert task.upstream_id is not None
        if not isinstance(provider, Cancellable):
            await self._poll(task, provider)
            return
        try:
            async with self._by_deadline(task):
                state = await provider.cancel(task.upstream_id, task.task_no)
        except UpstreamError as exc:
            if exc.transient:
                await self._retry(task, f"取消上游任务失败:{exc.message}", exc.retry_after)
                return
            state = None
        if state is not None and state.phase == "succeeded":
            await self._store_result(task, provider, state, {"upstream_status": state.raw_status})
            return
        await self.fail(
            task,
            "用户已取消任务",
            upstream_status=state.raw_status if state else task.upstream_status,
        )

    # -- the three kinds of step ------------------------------------------------------

    def _routes(self, task: AiTask) -> list[Route | None]:
        """Where to send the task, in order: the channels that serve its model, or, where
        none does, the upstream of the settings (``None``: the key or the sandbox)."""
        pool = self.ctx.channels
        if pool.serves(task.model_name):
            return list(pool.candidates(task.model_name))
        return [None] if task.provider in self.ctx.providers else []

    async def _submit(self, task: AiTask) -> None:
        await self.ctx.channels.refresh()
        routes = self._routes(task)
        if not routes:
            if self.ctx.channels.has_routes(task.model_name):
                # Every key that serves it is at its in-flight cap or open: wait, at no cost.
                await self._wait_for_route(task)
            else:
                await self.fail(task, "没有可用的上游渠道,任务无法执行")
            return
        last: UpstreamError | None = None
        images: tuple[tuple[bytes, str], ...] | None = None
        # A key whose probe another task took: this task waits for the probe's outcome.
        waiting = False
        for route in routes:
            provider = (
                self.ctx.providers[task.provider]
                if route is None
                else self.ctx.channels.provider(route.key_id)
            )
            if provider is None:
                continue
            if provider.wants_image_bytes and task.image_urls and images is None:
                images = await self._reference_images(task)
                if images is None:
                    return  # the task was failed or rescheduled
            job = UpstreamJob(
                task_no=task.task_no,
                upstream_model=route.upstream_model if route else task.upstream_model,
                params=dict(route.upstream_params if route else task.upstream_params or {}),
                prompt=task.prompt,
                image_urls=list(task.image_urls or []),
                images=(images or ()) if provider.wants_image_bytes else (),
            )
            # A key whose breaker's cool-down is over: one task, of all workers', probes it.
            probing = route is not None and route.open_until is not None
            if probing and route is not None and not await self._claim_probe(route):
                waiting = True
                continue
            started, clock = utcnow(), time.perf_counter()
            try:
                # A submit sent near the deadline still gets its own timeout: the upstream
                # is paid once it has the job, and an answer (a picture, or a job to poll
                # and watch late) is worth more than a cut. Cut after both: the task then
                # fails as uncertain, never sent again.
                submitting = (route, started, clock)
                timeout = self.settings.upstream_timeout
                async with self._by_deadline(task, submitting, at_least=timeout):
                    state = await provider.submit(job)
            except UpstreamError as exc:
                last = exc
                await self._attempt_failed(task, route, exc, started, clock, probe=probing)
                if exc.uncertain:
                    await self._uncertain(task, route, exc)
                    return
                if exc.key_rejected and route is not None:
                    await self._reject_key(route, exc)
                    continue
                if not exc.transient:
                    # The upstream refused the task itself (its content): not elsewhere either.
                    await self.fail(task, f"提交上游失败:{exc.message}")
                    return
                if route is not None:
                    log.warning(
                        "channel_failed_over", channel=route.channel_name, reason=exc.message
                    )
                continue
            if route is not None:
                self.ctx.channels.started(route.key_id)
            attempt = _attempt(task, route, "accepted", started, clock)
            if state.pictures:
                await self._answered_with_picture(task, route, state, attempt)
            else:
                await self._accepted(task, route, state, attempt)
            return
        if last is None and waiting:
            await self._wait_for_route(task)
            return
        if last is None or last.key_rejected:
            reason = f"({last.message})" if last else ""
            await self.fail(task, f"没有可用的上游渠道,任务无法执行{reason}")
        else:
            await self._retry_submit(task, last)

    async def _wait_for_route(self, task: AiTask) -> None:
        await self._move(
            task,
            Status.CREATED,
            last_error="上游渠道暂不可用(并发已满或熔断冷却中),排队等待",
            next_run_at=self._clamp(
                task, utcnow() + timedelta(seconds=self.settings.poll_interval)
            ),
        )

    async def _retry_submit(self, task: AiTask, exc: UpstreamError) -> None:
        """Later, while tries are left; else the task fails, saying how often it tried."""
        if task.attempts + 1 < self.settings.submit_attempts:
            await self._retry(task, exc.message, exc.retry_after)
        else:
            await self.fail(task, f"提交上游失败:{exc.message}(已尝试 {task.attempts + 1} 次)")

    async def _uncertain(self, task: AiTask, route: Route | None, exc: UpstreamError) -> None:
        """The submit was sent and its answer lost: a job may be running upstream, paid for.
        ``fail`` (the default) never sends it again; ``retry`` does, for upstreams that
        deduplicate. Counted per channel either way."""
        policy = route.uncertain_submit if route else self.settings.uncertain_submit
        channel = route.channel_name if route else task.provider
        log.warning("uncertain_submit", policy=policy, channel=channel, reason=exc.message)
        if route is not None:
            async with self.ctx.db.write() as session:
                await channel_service.count(session, route.channel_id, "uncertain_count")
        if policy == "fail":
            await self.fail(
                task,
                f"提交上游失败:{exc.message},无法确认上游是否已接受任务;"
                "为避免重复生成,任务不再重试",
                upstream_status="uncertain",
                channel_id=route.channel_id if route else None,
                channel_key_id=route.key_id if route else None,
            )
        else:
            await self._retry_submit(task, exc)

    async def _reject_key(self, route: Route, exc: UpstreamError) -> None:
        log.error(
            "channel_key_disabled",
            channel=route.channel_name,
            key_id=route.key_id,
            reason=exc.message,
        )
        async with self.ctx.db.write() as session:
            await channel_service.disable_key_for(session, route.key_id, exc.message)
        await self.ctx.channels.refresh(force=True)

    async def _claim_probe(self, route: Route) -> bool:
        assert route.open_until is not None
        hold = self.settings.upstream_timeout + 5.0
        async with self.ctx.db.write() as session:
            won = await channel_service.claim_probe(session, route.key_id, route.open_until, hold)
        if won:
            log.info("channel_probe", channel=route.channel_name, key_id=route.key_id)
        return won

    async def _attempt_failed(
        self,
        task: AiTask,
        route: Route | None,
        exc: UpstreamError,
        started: datetime,
        clock: float,
        *,
        probe: bool = False,
    ) -> None:
        """Records the attempt; a failure of the upstream (not a refusal of the task, nor of
        the key, which is disabled apart) counts towards its key's breaker."""
        if exc.uncertain:
            outcome = "uncertain"
        elif exc.key_rejected:
            outcome = "key_rejected"
        else:
            outcome = "failed" if exc.transient else "refused"
        opened = False
        async with self.ctx.db.write() as session:
            await add(session, _attempt(task, route, outcome, started, clock, exc))
            if route is not None and outcome in ("failed", "uncertain"):
                opened = await channel_service.key_failed(
                    session, route.key_id, exc.message, self.settings, probe=probe
                )
        if opened and route is not None:
            log.warning(
                "channel_breaker_opened",
                channel=route.channel_name,
                key_id=route.key_id,
                reason=exc.message,
            )
            # This worker's next submit skips the key at once; the others within a second.
            await self.ctx.channels.refresh(force=True)

    async def _accepted(
        self, task: AiTask, route: Route | None, state: UpstreamState, attempt: TaskAttempt
    ) -> None:
        now = utcnow()
        if route is not None and route.failing:
            log.info("channel_breaker_closed", channel=route.channel_name, key_id=route.key_id)
        await self._move(
            task,
            Status.QUEUED,
            also=(attempt,),
            # Always, not only when the routing table says the key is failing: the table
            # may be a second old, and "in a row" must end at every success.
            key_succeeded=route.key_id if route is not None else None,
            channel_id=route.channel_id if route else None,
            channel_key_id=route.key_id if route else None,
            upstream_model=route.upstream_model if route else task.upstream_model,
            upstream_id=state.upstream_id,
            upstream_status=state.raw_status,
            submitted_at=now,
            attempts=0,
            last_error=None,
            progress=max(task.progress, QUEUED_PROGRESS),
            **(
                # Answered with the picture's address: copy it now, nothing to poll.
                {"upstream_result_url": state.result_urls[0], "next_run_at": now}
                if state.phase == "succeeded" and state.result_urls
                else {
                    "next_run_at": self._clamp(
                        task, now + timedelta(seconds=self.settings.first_poll_delay)
                    )
                }
            ),
        )

    async def _answered_with_picture(
        self, task: AiTask, route: Route | None, state: UpstreamState, attempt: TaskAttempt
    ) -> None:
        """The upstream answered the submit with the picture itself (it cannot be fetched
        again): stored now, and the task accepted and completed in one transaction."""
        accepted: dict[str, Any] = {
            "channel_id": route.channel_id if route else None,
            "channel_key_id": route.key_id if route else None,
            "upstream_model": route.upstream_model if route else task.upstream_model,
            "upstream_id": state.upstream_id,
            "upstream_status": state.raw_status,
            "submitted_at": utcnow(),
        }
        # The picture is paid for and in hand: no backstop cuts its storing.
        _hold_off_step_bound()
        try:
            key = (await self._store(task, state.pictures[0])).key
        except NotAnImage as exc:
            await self.fail(task, f"上游返回的结果不是有效图片:{exc}", also=(attempt,), **accepted)
            return
        moved = False
        try:
            async with self.ctx.db.transaction() as session:
                await add(session, attempt)
                queued = await move(
                    session, task, Status.QUEUED, lease_owner=self.owner, **accepted
                )
                if queued is not None:
                    if route is not None:
                        await channel_service.key_succeeded(session, route.key_id)
                    moved = (
                        await move(
                            session,
                            task,
                            Status.COMPLETED,
                            lease_owner=None,
                            result_url=self.ctx.storage.url(key),
                            result_key=key,
                            last_error=None,
                        )
                        is not None
                    )
        finally:
            if not moved:
                await self.ctx.storage.delete(key)
        if not moved:
            log.warning("lease_lost", status=task.status, target=Status.COMPLETED.value)
            return
        log.info("task_moved", status=task.status, progress=task.progress)
        await self._announce(task)

    async def _reference_images(self, task: AiTask) -> tuple[tuple[bytes, str], ...] | None:
        """The task's reference pictures as bytes, for an upstream that takes files: our
        own uploads from storage, outside URLs through the SSRF guard. None when the task
        was failed or put off instead."""
        pictures: list[tuple[bytes, str]] = []
        for url in task.image_urls or []:
            key = self.ctx.storage.key_from_url(url)
            try:
                if key is not None:
                    data = await self.ctx.storage.get(key)
                    if data is None:
                        await self.fail(task, f"参考图已不存在: {url[:100]}")
                        return None
                else:
                    data = (
                        await fetch_image_bytes(
                            self._references,
                            url,
                            max_bytes=self.settings.max_upload_bytes,
                            what="参考图",
                            **self._pace(seconds_left(task)),
                        )
                    ).data
                info = await self.ctx.decoding.run(
                    sniff_image, data, self.settings.max_image_pixels
                )
            except FetchError as exc:
                if exc.out_of_time:
                    raise self._download_overran("参考图") from exc
                if exc.transient and task.attempts + 1 < self.settings.download_attempts:
                    await self._retry(task, f"参考图下载失败:{exc.message}", None)
                else:
                    await self.fail(task, f"参考图下载失败:{exc.message}")
                return None
            except NotAnImage as exc:
                await self.fail(task, f"参考图不是有效图片:{exc}")
                return None
            pictures.append((data, info.content_type))
        return tuple(pictures)

    async def _poll(self, task: AiTask, provider: Provider) -> None:
        assert task.upstream_id is not None
        try:
            async with self._by_deadline(task):
                state = await provider.poll(task.upstream_id, task.task_no)
        except UpstreamError as exc:
            if exc.transient:
                await self._retry(task, exc.message, exc.retry_after)
            else:
                await self.fail(task, f"查询上游任务失败:{exc.message}")
            return
        now = utcnow()
        common: dict[str, Any] = {
            "upstream_status": state.raw_status,
            "poll_count": task.poll_count + 1,
        }
        if state.phase == "failed":
            await self.fail(task, state.error or "上游生成失败,未说明原因", **common)
        elif state.phase == "succeeded":
            await self._store_result(task, provider, state, common)
        else:
            target = Status.QUEUED if state.phase == "queued" else Status.PROCESSING
            if task.status == Status.PROCESSING:
                target = Status.PROCESSING  # never back to queued on a stale answer
            progress = (
                max(task.progress, QUEUED_PROGRESS)
                if target is Status.QUEUED
                else estimate_progress(task, state.progress, now, self.settings.expected_duration)
            )
            await self._move(
                task,
                target,
                progress=progress,
                attempts=0,
                last_error=None,
                next_run_at=self._clamp(task, now + timedelta(seconds=self.settings.poll_interval)),
                **common,
            )

    async def _store_result(
        self, task: AiTask, provider: Provider, state: UpstreamState, common: dict[str, Any]
    ) -> None:
        url = state.result_urls[0]
        try:
            key = (await self._fetch_result(task, url, provider, seconds_left(task))).key
        except FetchError as exc:
            if exc.out_of_time:
                raise self._download_overran("结果图片") from exc
            if exc.transient and task.attempts + 1 < self.settings.download_attempts:
                await self._retry(task, exc.message, None)
            else:
                await self.fail(task, f"结果图片转存失败:{exc.message}", **common)
            return
        except NotAnImage as exc:
            await self.fail(task, f"上游返回的结果不是有效图片:{exc}", **common)
            return
        moved = False
        try:
            moved = await self._move(
                task,
                Status.COMPLETED,
                result_url=self.ctx.storage.url(key),
                result_key=key,
                upstream_result_url=url,
                last_error=None,
                **common,
            )
        finally:
            if not moved:
                # Another worker owns the task now (it stores its own copy), or the
                # write failed: no picture without its task.
                await self.ctx.storage.delete(key)

    async def _fetch_result(
        self, task: AiTask, url: str, provider: Provider, seconds: float
    ) -> Stored:
        """The upstream's picture, downloaded through the SSRF guard within ``seconds``
        and the rate floor, checked and stored."""
        fetched = await fetch_image_bytes(
            self._http,
            url,
            max_bytes=self.settings.max_result_bytes,
            trusted_origins=provider.trusted_origins,
            **self._pace(seconds),
        )
        return await self._store(task, fetched.data)

    async def _store(self, task: AiTask, picture: bytes) -> Stored:
        """``picture`` checked whole and stored as ``task``'s result (NotAnImage if not)."""
        return await self.ctx.storage.put_checked(
            picture,
            checked(self.settings.max_image_pixels),
            lambda info: self._result_key(task, info.ext),
            self.ctx.decoding,
        )

    def _result_key(self, task: AiTask, ext: str) -> str:
        day = local(task.created_at, self.settings.timezone)
        # The random part keeps one user from guessing another's picture from a task number.
        return f"results/{day:%Y/%m/%d}/{task.task_no}-{secrets.token_hex(8)}.{ext}"

    # -- writing the outcome -----------------------------------------------------------

    def _clamp(self, task: AiTask, when: datetime) -> datetime:
        return min(when, task.deadline_at)

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        delay: float = min(MAX_BACKOFF, self.settings.poll_interval * 2.0 ** min(attempts, 10))
        return max(delay, retry_after or 0.0)

    async def _retry(self, task: AiTask, reason: str, retry_after: float | None) -> None:
        delay = self._backoff(task.attempts, retry_after)
        log.warning(
            "step_retry",
            status=task.status,
            attempts=task.attempts + 1,
            delay=round(delay, 2),
            reason=reason,
        )
        await self._move(
            task,
            Status(task.status),
            attempts=task.attempts + 1,
            last_error=reason[:500],
            next_run_at=self._clamp(task, utcnow() + timedelta(seconds=delay)),
        )

    async def _reschedule(self, task: AiTask, reason: str) -> None:
        try:
            await self._retry(task, reason, None)
        except Exception:
            log.exception("reschedule_failed")

    async def fail(
        self, task: AiTask, message: str, *, also: Sequence[Base] = (), **values: Any
    ) -> None:
        log.warning("task_failed", reason=message)
        await self._move(task, Status.FAILED, also=also, error_message=message[:1000], **values)

    async def _move(
        self,
        task: AiTask,
        target: Status,
        *,
        also: Sequence[Base] = (),
        key_succeeded: int | None = None,
        **values: Any,
    ) -> bool:
        """``also``: rows written in the same transaction (the attempt that led here);
        ``key_succeeded``: the channel key whose breaker this success resets."""
        _hold_off_step_bound()
        before = (task.status, task.progress)
        async with self.ctx.db.transaction() as session:
            for row in also:
                await add(session, row)
            moved = await move(session, task, target, lease_owner=self.owner, **values)
            if moved is not None and key_succeeded is not None:
                await channel_service.key_succeeded(session, key_succeeded)
        if moved is None:
            log.warning("lease_lost", status=task.status, target=target.value)
            return False
        if (moved.status, moved.progress) != before:
            log.info("task_moved", status=moved.status, progress=moved.progress)
            await self._announce(moved)
        return True

    async def _announce(self, task: AiTask, event: str = "task.updated") -> None:
        detail = task_detail(task, self.settings.timezone)
        await self.ctx.bus.publish(
            task.user_id, {"event": event, "data": detail.model_dump()}, task_version(task)
        )
