"""The worker: a loop of short, idempotent steps on task rows.

Claim due rows under a lease, do one step (send upstream: :mod:`~shengtu.tasks.relay`;
poll upstream and copy the result: :mod:`~shengtu.tasks.results`), write the new state
with a move guarded by status and lease (:mod:`~shengtu.tasks.moves`), release. A crashed
worker's leases expire and any worker carries on from the last written state. Beside the
steps, now and then: the capabilities' periodic jobs, and the late-result watch
(:mod:`~shengtu.tasks.late`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import Integer, bindparam, or_, select, update

from shengtu.channels.bootstrap import sync_env_channel
from shengtu.context import AppContext
from shengtu.db import UtcDateTime, columns_of, loaded, run, utcnow
from shengtu.exchanges import jobs as exchanges_jobs
from shengtu.exchanges.service import ExchangeRecorder
from shengtu.idempotency import jobs as idempotency_jobs
from shengtu.logs import get_logger
from shengtu.models.tasks import ACTIVE_SQL, AiTask, Status
from shengtu.payments import jobs as payments_jobs
from shengtu.periodic import PeriodicJob
from shengtu.providers.base import UpstreamState
from shengtu.stats import jobs as stats_jobs
from shengtu.storage import jobs as storage_jobs
from shengtu.tasks.deadlines import Overran, deadline_reason, step_bound
from shengtu.tasks.handoff import Lease
from shengtu.tasks.late import LateWatch
from shengtu.tasks.moves import Moves
from shengtu.tasks.relay import Relay
from shengtu.tasks.results import Results, provider_of, unpack_urls
from shengtu.tasks.review import HELD
from shengtu.tasks.schemas import webhook_data
from shengtu.webhooks.dispatcher import Dispatcher

log = get_logger("shengtu.worker")

# Every capability's periodic work, run in turn every SHENGTU_SWEEP_INTERVAL_SECONDS (the
# webhooks' own runs in their dispatcher, which runs wherever a worker does).
PERIODIC_JOBS = (
    *storage_jobs.JOBS,
    *stats_jobs.JOBS,
    *idempotency_jobs.JOBS,
    *exchanges_jobs.JOBS,
    *payments_jobs.SWEEP_JOBS,
)

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


class _Every:
    """Background work started now and then by the loop: never two runs at once, and the
    next start ``interval`` seconds after the last."""

    def __init__(self, interval: float, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._interval = interval
        self._work = work
        self._at = 0.0
        self._running: asyncio.Task[None] | None = None

    def poke(self) -> None:
        now = time.monotonic()
        if now < self._at or (self._running is not None and not self._running.done()):
            return
        self._at = now + self._interval
        self._running = asyncio.create_task(self._work())

    def cancel(self) -> None:
        if self._running is not None:
            self._running.cancel()


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
        self.moves = Moves(ctx, self.owner)
        # What the steps' upstream calls record, written in the background (issue 23).
        self.exchanges = ExchangeRecorder(ctx)
        self.results = Results(ctx, self.moves, self._http, self.exchanges)
        self.relay = Relay(ctx, self.moves, self.results, self._references, self.exchanges)
        self.late = LateWatch(ctx, self.moves, self.results, self.exchanges)
        self.steps_done = 0
        # Set when every slot is busy: the loop then waits for a quarter of them to free
        # up (not for the next tick), so throughput isn't capped at one batch per tick.
        self._full = False
        self._refill_at = max(
            1, min(self.settings.worker_batch, self.settings.worker_concurrency) // 4
        )
        self._backlog = False
        # Now and then, in the background: the capabilities' periodic jobs (PERIODIC_JOBS;
        # each is safe while other workers run it too), and questions about the upstream
        # jobs of failed tasks that may still deliver.
        self._background = [_Every(self.settings.sweep_interval_seconds, self._sweep)]
        # Pending payments are asked about far more often than the sweep runs: each
        # order's own back-off (10 s, 30 s, ...) spaces the questions.
        self._background.append(
            _Every(self.settings.payment_check_seconds, lambda: self._run(payments_jobs.JOBS))
        )
        if self.late.enabled:
            self._background.append(_Every(self.late.interval, self.late.watch))
        # Webhook deliveries run wherever a worker runs.
        self.webhooks = Dispatcher(ctx, lambda task: webhook_data(task, ctx.settings.timezone))

    @staticmethod
    def _fetcher(connections: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, connect=10.0),
            headers={"User-Agent": "Shengtu/0.1"},
            limits=httpx.Limits(
                max_connections=connections, max_keepalive_connections=min(20, connections)
            ),
        )

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
        exchanges = asyncio.create_task(self.exchanges.run())
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
                for background in self._background:
                    background.poke()
                if claimed and self._capacity() > 0:
                    continue
                self._full = self._capacity() <= 0
                await self._idle()
        finally:
            heartbeat.cancel()
            self.webhooks.stop()
            await deliveries
            for background in self._background:
                background.cancel()
            if self._steps:
                await asyncio.wait(self._steps, timeout=10)
            # After the steps: what their last calls recorded is written too.
            self.exchanges.stop()
            await exchanges
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

    async def _sweep(self) -> None:
        await self._run(PERIODIC_JOBS)

    async def _run(self, jobs: Sequence[PeriodicJob]) -> None:
        for job in jobs:
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
                async with step_bound(task, self.settings):
                    await self.step(task)
            except Overran as over:
                await self._overran(task, over)
        except Exception as exc:
            log.exception("step_crashed", status=task.status)
            # A bug must not spin: back off, and the deadline still ends the task.
            await self.moves.reschedule(task, f"内部错误: {type(exc).__name__}")
        finally:
            self._inflight.discard(task.id)
            self.steps_done += 1
            if self._full and self._capacity() >= self._refill_at:
                self._full = False
                self.ctx.bus.wakeup.set()
            structlog.contextvars.unbind_contextvars("task_no")

    async def _overran(self, task: AiTask, over: Overran) -> None:
        """The task's deadline came while its step waited: it fails (and is refunded) now,
        not when the wait ends. A submit in flight may have started a job upstream: the
        relay records the attempt as uncertain, and the task is never sent again."""
        log.warning("step_overran", status=task.status, submitting=over.submit is not None)
        if over.submit is None:
            await self.moves.fail(task, over.message, **await self.late.columns(task, utcnow()))
            return
        await self.relay.overran(task, over)

    async def step(self, task: AiTask) -> None:
        if task.upstream_status == HELD:
            # Its pictures wait for the operator: it ends by their decision or at its
            # deadline, with nothing more to ask the upstream (shengtu.tasks.review).
            await self.results.settle_held(task)
            return
        now = utcnow()
        if now >= task.deadline_at:
            reason = deadline_reason(task, self.settings)
            await self.moves.fail(task, reason, **await self.late.columns(task, now))
            return
        if task.status == Status.CREATED:
            await self.relay.submit(task)
            return
        provider = await provider_of(self.ctx, task)
        if provider is not None and task.cancel_requested_at is not None:
            await self.relay.cancel(task, provider)
            return
        if provider is None:
            await self.moves.fail(task, "受理该任务的上游渠道或密钥已被删除,无法查询结果")
            return
        if task.upstream_result_url and task.upstream_id:
            # The upstream answered the submit with the picture's address (a protocol
            # with nothing to poll): only the copy is left to do, and to retry.
            urls = unpack_urls(task.upstream_result_url)
            done = UpstreamState(task.upstream_id, "succeeded", "completed", 100, urls)
            await self.results.store_result(task, provider, done, {"poll_count": task.poll_count})
            return
        await self.results.poll(task, provider)
