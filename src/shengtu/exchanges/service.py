"""Every upstream exchange of a task, kept for the operator (issue 23).

The provider records each request and its answer into the exchange log the worker sets
around the call (:mod:`shengtu.providers.exchanges`: keys and signatures masked, pictures
shortened to their length, bodies capped at SHENGTU_EXCHANGE_BODY_BYTES). The worker hands
what a call recorded to :class:`ExchangeRecorder`, which writes it in the background: a
write transaction of its own, batching whatever came while the last one ran, so a
worker polling hundreds of tasks a second adds a few small transactions a second, not one
a poll, and no task's step waits for it. A failed write is logged and dropped: the
exchanges are for reading, and never hold up or break a task.

A poll that gets the answer the task's last poll got is not kept again: the kept row
counts it (``repeats``, and ``last_at`` the last time it came), so a task polled for an
hour keeps each distinct answer once and how long it lasted, not 360 copies. Answers are
the same when they differ only in the upstream's id of the request (``request_id`` and the
like, fresh in every answer of DashScope and Kling); the answer headers of the repeats
(their request ids) are not kept. The count is written when the answer changes, and
otherwise once every REPEATS_WRITE_GAP seconds, in the same batches as the rows.

They are read only by operators (``GET /admin/tasks/{taskNo}`` and the console's task
detail), deleted with their task, and by the sweep after SHENGTU_EXCHANGE_RETENTION_DAYS.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.context import AppContext
from shengtu.db import Database, utcnow
from shengtu.exchanges.schemas import ExchangeOut
from shengtu.logs import get_logger
from shengtu.models.exchanges import UpstreamExchange
from shengtu.models.tasks import AiTask
from shengtu.providers.exchanges import Exchange, ExchangeLog, Redactor, recording
from shengtu.timefmt import local

log = get_logger("shengtu.exchanges")

Step = Literal["submit", "poll", "cancel", "late_poll", "download"]
# Waiting to be written at most; beyond (the database away), the oldest are dropped.
MAX_PENDING = 5000
# Seconds between two writes: what comes meanwhile goes in one transaction.
WRITE_GAP = 0.2
# The task detail shows a task's first and last exchanges (a task watched late for a day
# has over a thousand polls); the others are read a page at a time.
DETAIL_FIRST = 20
DETAIL_LAST = 80
PRUNE_BATCH = 1000
# The steps whose repeated answers are counted on the kept row rather than kept again.
FOLDED_STEPS = frozenset({"poll", "late_poll"})
# Seconds between two writes of a kept answer's repeat count while it keeps coming; the
# counts due are looked for every SETTLE_EVERY seconds (spread, not all at once).
REPEATS_WRITE_GAP = 60.0
SETTLE_EVERY = 5.0
# Tasks whose last poll answer a worker remembers; beyond, the longest unpolled are
# forgotten (their next poll is kept anew).
MAX_RUNS = 50_000
_TABLE = cast("Table", UpstreamExchange.__table__)
# A field of an answer that names the request, not the job: fresh in every answer.
_REQUEST_ID = re.compile(
    r'"(?:request|trace|log)[-_]?id"\s*:\s*(?:"[^"\\]*"|\d+)\s*,?', re.IGNORECASE
)
_COUNT = (
    update(_TABLE)
    .where(_TABLE.c.task_id == bindparam("b_task"), _TABLE.c.created_at == bindparam("b_at"))
    .values(repeats=bindparam("b_repeats"), last_at=bindparam("b_last"))
)


@dataclass(slots=True)
class _Run:
    """A task's last kept poll answer, and how often it came again since."""

    sameness: int
    # The kept row's key: its task and when its request went out (microseconds: no two
    # requests of one task share it).
    task_id: int
    at: datetime
    # The task's poll count when last seen: a poll by another worker in between moves it
    # on by more than one, and what that worker kept sits between the two.
    polls: int
    repeats: int = 0
    last_at: datetime | None = None
    written: int = 0
    written_clock: float = 0.0


def sameness(step: str, e: Exchange) -> int:
    """What two exchanges must share to be one answer come again: the request and the
    answer, but for the upstream's id of the request. A hash, as a run keeps it for a
    while (the answer itself may be 16 KB): two answers in a row of one task that differ
    yet share their 64-bit hash are not to be expected."""
    body = e.response_body
    if body is not None:
        body = _REQUEST_ID.sub("", body)
    return hash((step, e.method, e.url, e.request_body, e.status, e.error, body))


class ExchangeRecorder:
    """A worker's writer of the exchanges its provider calls record."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._pending: list[dict[str, Any]] = []
        # Repeat counts to write: (task id, kept row's time) -> (repeats, last time).
        self._counts: dict[tuple[int, datetime], tuple[int, datetime | None]] = {}
        self._runs: OrderedDict[int, _Run] = OrderedDict()
        self._settled = time.monotonic()
        self._dropped = 0
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def enabled(self) -> bool:
        return self.ctx.settings.exchange_retention_days > 0

    @contextmanager
    def recording(
        self, task: AiTask, step: Step, *, channel_id: int | None, key_id: int | None
    ) -> Iterator[None]:
        """The exchanges of the provider calls inside are kept as ``task``'s ``step``,
        whatever the calls end in (an answer, an error, the task's deadline)."""
        if not self.enabled:
            yield
            return
        book = ExchangeLog(self.ctx.settings.exchange_body_bytes)
        try:
            with recording(book):
                yield
        finally:
            self.keep(task, step, channel_id, key_id, book.exchanges)

    def download(
        self,
        task: AiTask,
        provider: object,
        url: str,
        at: datetime,
        clock: float,
        *,
        size: int | None = None,
        error: str | None = None,
    ) -> None:
        """A result picture's download: its address (signatures masked) and how it went,
        never the picture."""
        if not self.enabled:
            return
        # An HTTP upstream names its secrets (shengtu.providers.http); a result address
        # rarely holds one, but a signed one may.
        named = getattr(provider, "exchange_secrets", None)
        secrets: tuple[str, ...] = named() if callable(named) else ()
        redactor = Redactor(secrets, self.ctx.settings.exchange_body_bytes)
        exchange = Exchange(
            protocol=str(getattr(provider, "name", "")),
            method="GET",
            url=redactor.url(url),
            request_headers={},
            request_body=None,
            status=200 if error is None else None,
            response_headers={},
            response_body=None if size is None else f"<图片 {size} 字节>",
            error=None if error is None else redactor.text(error)[:500],
            elapsed_ms=round((time.perf_counter() - clock) * 1000, 1),
            at=at,
        )
        self.keep(task, "download", task.channel_id, task.channel_key_id, [exchange])

    def keep(
        self,
        task: AiTask,
        step: Step,
        channel_id: int | None,
        key_id: int | None,
        exchanges: Sequence[Exchange],
    ) -> None:
        """Queued for the next write (:meth:`run`); a poll's answer that repeats the
        task's last one counted on the row that holds it instead."""
        for e in exchanges:
            if step in FOLDED_STEPS:
                if self._folded(task, step, e):
                    continue
            else:
                self._end_run(task.id)
            self._pending.append(
                {
                    "task_id": task.id,
                    "task_no": task.task_no,
                    "channel_id": channel_id,
                    "key_id": key_id,
                    "protocol": e.protocol[:32],
                    "step": step,
                    "method": e.method[:8],
                    "url": e.url,
                    "request_headers": e.request_headers,
                    "request_body": e.request_body,
                    "status": e.status,
                    "response_headers": e.response_headers,
                    "response_body": e.response_body,
                    "error": None if e.error is None else e.error[:500],
                    "elapsed_ms": e.elapsed_ms,
                    "created_at": e.at,
                }
            )
        over = len(self._pending) - MAX_PENDING
        if over > 0:
            self._forget(self._pending[:over])
            del self._pending[:over]
            self._dropped += over
        if exchanges:
            self._wake.set()

    def _folded(self, task: AiTask, step: str, e: Exchange) -> bool:
        """Whether ``e`` repeats the task's last kept poll answer (then counted there);
        else it starts the task's next run, and is kept."""
        same = sameness(step, e)
        polls = task.poll_count
        run = self._runs.get(task.id)
        if run is not None and run.sameness == same and 0 <= polls - run.polls <= 1:
            run.repeats += 1
            run.last_at = e.at
            run.polls = polls
            self._runs.move_to_end(task.id)
            return True
        self._end_run(task.id)
        self._runs[task.id] = _Run(same, task.id, e.at, polls, written_clock=time.monotonic())
        if len(self._runs) > MAX_RUNS:
            _, oldest = self._runs.popitem(last=False)
            self._count(oldest)
        return False

    def _end_run(self, task_id: int) -> None:
        run = self._runs.pop(task_id, None)
        if run is not None:
            self._count(run)

    def _count(self, run: _Run) -> None:
        """The run's repeats to the next write, if any came since the last."""
        if run.repeats != run.written:
            self._counts[(run.task_id, run.at)] = (run.repeats, run.last_at)
            run.written = run.repeats
            run.written_clock = time.monotonic()
            self._wake.set()

    def _settle(self, everything: bool = False) -> None:
        """The counts of answers still repeating, each once every REPEATS_WRITE_GAP."""
        now = time.monotonic()
        if not everything and now - self._settled < SETTLE_EVERY:
            return
        self._settled = now
        for run in self._runs.values():
            if everything or now - run.written_clock >= REPEATS_WRITE_GAP:
                self._count(run)

    async def run(self) -> None:
        """Writes what is pending, until :meth:`stop`; then what is left."""
        while not self._stopping:
            # Woken by what is kept; else at the latest when counts may be due.
            with suppress(TimeoutError):
                async with asyncio.timeout(SETTLE_EVERY):
                    await self._wake.wait()
            self._wake.clear()
            self._settle()
            await self.flush()
            if not self._stopping:
                await asyncio.sleep(WRITE_GAP)
        self._settle(everything=True)
        await self.flush()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def flush(self) -> None:
        rows, self._pending = self._pending, []
        counts, self._counts = self._counts, {}
        if self._dropped:
            log.warning("upstream_exchanges_dropped", count=self._dropped)
            self._dropped = 0
        if not rows and not counts:
            return
        repeats = [
            {"b_task": task_id, "b_at": at, "b_repeats": n, "b_last": last}
            for (task_id, at), (n, last) in counts.items()
        ]
        try:
            await write(self.ctx.db, rows, repeats)
        except Exception:
            log.exception("upstream_exchanges_not_kept", count=len(rows))
            self._forget(rows)

    def _forget(self, rows: list[dict[str, Any]]) -> None:
        """The runs of rows that will not be written: the next answer of their task is
        kept anew, not counted on a row that is not there."""
        for row in rows:
            run = self._runs.get(row["task_id"])
            if run is not None and run.at == row["created_at"]:
                del self._runs[row["task_id"]]


async def write(
    db: Database, rows: list[dict[str, Any]], repeats: list[dict[str, Any]] | None = None
) -> None:
    """``rows``, and the ``repeats`` counts of rows kept before, in one transaction; those
    of a task deleted meanwhile (its user deleted) are left out, as its exchanges went
    with it (a count finds no row)."""
    try:
        await _insert(db, rows, repeats or [])
    except IntegrityError:
        ids = {row["task_id"] for row in rows}
        async with db.read() as session:
            alive = set(await session.scalars(select(AiTask.id).where(AiTask.id.in_(ids))))
        rows = [row for row in rows if row["task_id"] in alive]
        await _insert(db, rows, repeats or [])


async def _insert(db: Database, rows: list[dict[str, Any]], repeats: list[dict[str, Any]]) -> None:
    if not rows and not repeats:
        return
    async with db.write() as session:
        # Core, past the ORM's bulk insert: half the cost a row.
        if rows:
            await session.execute(insert(_TABLE), rows)
        # After the rows: a count may be of a row of this same batch.
        if repeats:
            await session.execute(_COUNT, repeats)


def exchange_out(row: UpstreamExchange, tz: str) -> ExchangeOut:
    return ExchangeOut(
        id=row.id,
        step=row.step,
        protocol=row.protocol,
        channelId=row.channel_id,
        keyId=row.key_id,
        method=row.method,
        url=row.url,
        requestHeaders=row.request_headers or {},
        requestBody=row.request_body,
        status=row.status,
        responseHeaders=row.response_headers or {},
        responseBody=row.response_body,
        error=row.error,
        elapsedMs=row.elapsed_ms,
        time=_shown(row.created_at, tz),
        repeats=row.repeats or 0,
        lastTime=None if row.last_at is None else _shown(row.last_at, tz),
    )


def _shown(at: datetime, tz: str) -> str:
    return local(at, tz).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


async def of_task(session: AsyncSession, task_id: int, tz: str) -> tuple[list[ExchangeOut], int]:
    """``task_id``'s exchanges for its detail, oldest first: every one, or the first
    DETAIL_FIRST and the last DETAIL_LAST of many; and how many it has."""
    where = UpstreamExchange.task_id == task_id
    total = int(await session.scalar(select(func.count()).where(where)) or 0)
    ordered = select(UpstreamExchange).where(where)
    if total <= DETAIL_FIRST + DETAIL_LAST:
        rows = list(await session.scalars(ordered.order_by(UpstreamExchange.id)))
    else:
        first = await session.scalars(ordered.order_by(UpstreamExchange.id).limit(DETAIL_FIRST))
        last = await session.scalars(
            ordered.order_by(UpstreamExchange.id.desc()).limit(DETAIL_LAST)
        )
        rows = [*first, *reversed(list(last))]
    return [exchange_out(r, tz) for r in rows], total


async def page_of_task(
    session: AsyncSession, task_id: int, tz: str, *, page: int, size: int
) -> tuple[list[ExchangeOut], int]:
    """One page of ``task_id``'s exchanges, oldest first, and how many it has."""
    where = UpstreamExchange.task_id == task_id
    total = int(await session.scalar(select(func.count()).where(where)) or 0)
    rows = await session.scalars(
        select(UpstreamExchange)
        .where(where)
        .order_by(UpstreamExchange.id)
        .offset((page - 1) * size)
        .limit(size)
    )
    return [exchange_out(r, tz) for r in rows], total


async def prune(ctx: AppContext, now: datetime | None = None, *, batches: int = 100) -> int:
    """Deletes the exchanges older than SHENGTU_EXCHANGE_RETENTION_DAYS (every one at 0),
    PRUNE_BATCH at a time in short transactions; how many this call deleted (racing
    workers each delete what is still there)."""
    cutoff = (now or utcnow()) - timedelta(days=ctx.settings.exchange_retention_days)

    due = (
        select(UpstreamExchange.id)
        .where(UpstreamExchange.created_at < cutoff)
        .order_by(UpstreamExchange.created_at)
    )
    delete_ids = ctx.db.deleting(UpstreamExchange.id)
    gone = await ctx.db.delete_in_batches(due, delete_ids, batch=PRUNE_BATCH, batches=batches)
    if gone:
        log.info("upstream_exchanges_pruned", count=gone)
    return gone
