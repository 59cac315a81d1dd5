"""Stats of ended tasks: closed hours come from the rollup, the hours since from the tasks.

A task counts in the hour it ended (``completed_at``): it was charged its ``points_cost``,
refunded it if it failed (or the pictures it did not deliver if it completed), and cost
what it recorded (``ai_task.cost``) if it completed; an older task that recorded none, its
channel's ``costPerPicture`` × the pictures delivered. The rollup sums every closed hour
once (:func:`rollup`, run by the worker's sweep); a query adds the tasks that ended since,
read live, so the figures are exact and current.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, insert, literal, or_, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.db import Database, UtcDateTime, utcnow
from shengtu.errors import BadRequest
from shengtu.logs import get_logger
from shengtu.models.accounts import User
from shengtu.models.channels import Channel
from shengtu.models.payments import CREDITED, PaymentOrder, PaymentSettings
from shengtu.models.safety import SafetyEvent
from shengtu.models.stats import (
    LATENCY_BOUNDS,
    LATENCY_COLUMNS,
    StatsHour,
    StatsState,
    StatsUserDay,
    StatsUserHour,
)
from shengtu.models.tasks import ACTIVE, AiTask, Status
from shengtu.providers.base import is_moderation
from shengtu.timefmt import midnight_utc, to_utc

log = get_logger("shengtu.stats")

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# An hour is rolled up this long after it closed: a task's end is stamped before its
# transaction commits, and no commit takes this long.
ROLLUP_LAG = timedelta(minutes=5)
# What the overflow bucket of the histogram is taken to reach, for percentiles.
LATENCY_CEILING = 1800.0


def floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


@dataclass
class Counts:
    completed: int = 0
    failed: int = 0
    charged: int = 0
    refunded: int = 0
    cost: Decimal = Decimal(0)
    latency: list[int] = field(default_factory=lambda: [0] * len(LATENCY_COLUMNS))
    # Of the failed, those an upstream refused for their content (a moderation).
    moderated: int = 0

    def add(self, other: Counts) -> None:
        self.completed += other.completed
        self.failed += other.failed
        self.moderated += other.moderated
        self.charged += other.charged
        self.refunded += other.refunded
        self.cost += other.cost
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile of time to result, from the histogram (linear in a bucket)."""
        total = sum(self.latency)
        if not total:
            return None
        rank = q * total
        seen = 0
        bounds = (0.0, *map(float, LATENCY_BOUNDS), LATENCY_CEILING)
        for i, n in enumerate(self.latency):
            if n and seen + n >= rank:
                low, high = bounds[i], bounds[i + 1]
                return round(low + (high - low) * (rank - seen) / n, 1)
            seen += n
        return LATENCY_CEILING


ENDED = frozenset({Status.COMPLETED.value, Status.FAILED.value})
HourKey = tuple[datetime, str, int]  # hour, model, channel (0: the settings' upstream)
UserKey = tuple[datetime, int]


@dataclass
class Sums:
    by_hour: dict[HourKey, Counts] = field(default_factory=lambda: defaultdict(Counts))
    by_user: dict[UserKey, Counts] = field(default_factory=lambda: defaultdict(Counts))


_ENDED = (
    AiTask.model_name,
    AiTask.channel_id,
    AiTask.user_id,
    AiTask.status,
    AiTask.points_cost,
    AiTask.created_at,
    AiTask.completed_at,
    AiTask.pictures,
    AiTask.delivered,
    AiTask.cost,
    AiTask.error_message,
)


async def _channel_costs(session: AsyncSession) -> dict[int, Decimal]:
    rows = await session.execute(select(Channel.id, Channel.cost_per_picture))
    return {int(i): Decimal(c or 0) for i, c in rows.tuples()}


def undelivered_refund(points: int, pictures: int, delivered: int) -> int:
    """The points a completed task gave back for the pictures it did not deliver, as the
    move that completed it worked them out (:func:`shengtu.tasks.machine.move`)."""
    return points // pictures * (pictures - delivered) if delivered < pictures else 0


async def ended_between(session: AsyncSession, start: datetime, end: datetime) -> Sums:
    """The sums of the tasks that ended in [start, end), from the tasks themselves."""
    costs = await _channel_costs(session)
    sums = Sums()
    # By the end time alone (only an ended task has one): a status condition beside it
    # lets SQLite's planner walk the (status, next_run_at) index through every ended task.
    result = await session.execute(
        select(*_ENDED).where(AiTask.completed_at >= start, AiTask.completed_at < end)
    )
    for row in result.tuples():
        (
            model,
            channel,
            user,
            status,
            points,
            created,
            completed,
            pictures,
            delivered,
            cost,
            error,
        ) = row
        if completed is None or status not in ENDED:
            continue
        hour = floor_hour(completed)
        one = Counts()
        one.charged = points
        if status == Status.COMPLETED:
            one.completed = 1
            pictures = pictures or 1
            # An older task recorded neither what it delivered (one picture) nor its cost.
            kept = pictures if delivered is None else delivered
            one.refunded = undelivered_refund(points, pictures, kept)
            one.cost = (
                Decimal(cost) if cost is not None else costs.get(channel or 0, Decimal(0)) * kept
            )
            seconds = (completed - created).total_seconds()
            one.latency[bisect.bisect_left(LATENCY_BOUNDS, seconds)] = 1
        else:
            one.failed = 1
            one.moderated = int(is_moderation(error))
            one.refunded = points
        sums.by_hour[(hour, model, channel or 0)].add(one)
        sums.by_user[(hour, user)].add(one)
    return sums


async def _state(session: AsyncSession) -> datetime:
    """Where the rollup reaches; made at the first hour any task ended (or now)."""
    rolled = await session.scalar(select(StatsState.rolled_to).where(StatsState.id == 1))
    if rolled is not None:
        return rolled
    first = await session.scalar(select(func.min(AiTask.completed_at)))
    return floor_hour(first or utcnow())


async def rolled_to(db: Database) -> datetime:
    async with db.read() as session:
        return await _state(session)


async def rollup(db: Database, now: datetime | None = None) -> int:
    """Sum every closed hour not yet in the rollup; the number of hours added. Safe with
    several workers: each hour moves the watermark by a guarded UPDATE first."""
    now = now or utcnow()
    last = floor_hour(now - ROLLUP_LAG)
    added = 0
    async with db.write() as session:
        if await session.scalar(select(StatsState.id).where(StatsState.id == 1)) is None:
            start = await _state(session)
            try:
                async with session.begin_nested():
                    session.add(StatsState(id=1, rolled_to=start))
            except IntegrityError:
                pass
    while True:
        async with db.write() as session:
            hour = await _state(session)
            if hour + HOUR > last:
                return added
            # Skip the empty hours at once.
            upcoming = await session.scalar(
                select(func.min(AiTask.completed_at)).where(AiTask.completed_at >= hour)
            )
            end = hour + HOUR
            if upcoming is None or floor_hour(upcoming) >= last:
                end = last
            elif floor_hour(upcoming) > hour:
                end = floor_hour(upcoming)
            moved = await session.execute(
                update(StatsState)
                .where(StatsState.id == 1, StatsState.rolled_to == hour)
                .values(rolled_to=end)
            )
            if getattr(moved, "rowcount", 0) != 1:
                return added
            if end == hour + HOUR:
                await _store(session, await ended_between(session, hour, end))
            await _close_days(session, hour, end)
            added += 1


def floor_day(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


async def _close_days(session: AsyncSession, old: datetime, new: datetime) -> None:
    """Sum each UTC day whose last hour the watermark just passed (old, new] into
    ``stats_user_day``, from its hours."""
    day = floor_day(old)
    while day + DAY <= new:
        if day + DAY > old:
            await session.execute(
                insert(StatsUserDay).from_select(
                    ["day", "user_id", "completed", "failed", "charged", "refunded"],
                    select(
                        literal(day, UtcDateTime()),
                        StatsUserHour.user_id,
                        func.sum(StatsUserHour.completed),
                        func.sum(StatsUserHour.failed),
                        func.sum(StatsUserHour.charged),
                        func.sum(StatsUserHour.refunded),
                    )
                    .where(StatsUserHour.hour >= day, StatsUserHour.hour < day + DAY)
                    .group_by(StatsUserHour.user_id),
                )
            )
        day += DAY


async def _store(session: AsyncSession, sums: Sums) -> None:
    hours = [
        {
            "hour": hour,
            "model_name": model,
            "channel_id": channel,
            "completed": c.completed,
            "failed": c.failed,
            "moderated": c.moderated,
            "charged": c.charged,
            "refunded": c.refunded,
            "cost": c.cost,
            **dict(zip(LATENCY_COLUMNS, c.latency, strict=True)),
        }
        for (hour, model, channel), c in sums.by_hour.items()
    ]
    users = [
        {
            "hour": hour,
            "user_id": user,
            "completed": c.completed,
            "failed": c.failed,
            "charged": c.charged,
            "refunded": c.refunded,
        }
        for (hour, user), c in sums.by_user.items()
    ]
    if hours:
        await session.execute(insert(StatsHour), hours)
    if users:
        await session.execute(insert(StatsUserHour), users)


_SUMMED = tuple(
    func.coalesce(func.sum(getattr(StatsHour, c)), 0)
    for c in ("completed", "failed", "moderated", "charged", "refunded", "cost", *LATENCY_COLUMNS)
)


def _counts(row: Any) -> Counts:
    completed, failed, moderated, charged, refunded, cost, *latency = row
    return Counts(
        int(completed),
        int(failed),
        int(charged),
        int(refunded),
        Decimal(cost),
        list(map(int, latency)),
        int(moderated),
    )


Route = tuple[str, int]  # model, channel (0: the settings' upstream)


async def _rolled_sums(
    session: AsyncSession, start: datetime, end: datetime
) -> tuple[dict[datetime, Counts], dict[Route, Counts]]:
    """The rollup's sums over [start, end), per hour and per model and channel: summed by
    the database, so a month is two small answers, not thousands of rows."""
    by_hour: dict[datetime, Counts] = defaultdict(Counts)
    by_route: dict[Route, Counts] = defaultdict(Counts)
    if start >= end:
        return by_hour, by_route
    in_range = (StatsHour.hour >= start, StatsHour.hour < end)
    hours = await session.execute(
        select(StatsHour.hour, *_SUMMED).where(*in_range).group_by(StatsHour.hour)
    )
    for hour, *sums in hours.tuples():
        by_hour[hour] = _counts(sums)
    routes = await session.execute(
        select(StatsHour.model_name, StatsHour.channel_id, *_SUMMED)
        .where(*in_range)
        .group_by(StatsHour.model_name, StatsHour.channel_id)
    )
    for model, channel, *sums in routes.tuples():
        by_route[(model, int(channel))] = _counts(sums)
    return by_hour, by_route


def _user_rows(start: datetime, split: datetime) -> Any:
    """Per-user rows covering [start, split) once: whole UTC days from ``stats_user_day``,
    the hours at either edge from ``stats_user_hour``."""
    columns = ("completed", "failed", "charged", "refunded")
    first, last = floor_day(start), floor_day(split)
    if first < start:
        first += DAY
    hours = select(StatsUserHour.user_id, *(getattr(StatsUserHour, c) for c in columns))
    if first >= last:
        return hours.where(StatsUserHour.hour >= start, StatsUserHour.hour < split).subquery()
    days = select(StatsUserDay.user_id, *(getattr(StatsUserDay, c) for c in columns)).where(
        StatsUserDay.day >= first, StatsUserDay.day < last
    )
    edges = hours.where(
        or_(
            and_(StatsUserHour.hour >= start, StatsUserHour.hour < first),
            and_(StatsUserHour.hour >= last, StatsUserHour.hour < split),
        )
    )
    return union_all(days, edges).subquery()


async def _top_users(
    session: AsyncSession, start: datetime, split: datetime, live: Sums, limit: int
) -> list[tuple[int, Counts]]:
    """The ``limit`` users of most net points. The candidates are the rollup's top
    ``limit`` and every user with live tasks: live tasks only add to a user's net, so no
    one else can rank above them."""
    users: dict[int, Counts] = defaultdict(Counts)
    for (_, user), counts in live.by_user.items():
        users[user].add(counts)
    if start < split:
        rows = _user_rows(start, split)
        sums = select(
            rows.c.user_id,
            func.sum(rows.c.completed),
            func.sum(rows.c.failed),
            func.sum(rows.c.charged),
            func.sum(rows.c.refunded),
        ).group_by(rows.c.user_id)
        net = func.sum(rows.c.charged) - func.sum(rows.c.refunded)
        top = await session.execute(sums.order_by(net.desc()).limit(limit))
        rolled = {
            int(u): Counts(int(c), int(f), int(ch), int(r)) for u, c, f, ch, r in top.tuples()
        }
        others = [u for u in users if u not in rolled]
        for chunk in (others[i : i + 5000] for i in range(0, len(others), 5000)):
            found = await session.execute(sums.where(rows.c.user_id.in_(chunk)))
            for u, c, f, ch, r in found.tuples():
                rolled[int(u)] = Counts(int(c), int(f), int(ch), int(r))
        for user, counts in rolled.items():
            users[user].add(counts)
    ranked = sorted(users.items(), key=lambda kv: kv[1].charged - kv[1].refunded, reverse=True)
    return ranked[:limit]


@dataclass
class Report:
    start: datetime
    end: datetime
    rolled_to: datetime
    by_hour: dict[datetime, Counts]
    by_route: dict[Route, Counts]
    top_users: list[tuple[int, str | None, Counts]]
    channel_names: dict[int, str]
    in_flight: int


async def report(db: Database, start: datetime, end: datetime, top: int = 10) -> Report:
    """The sums of [start, end) (whole UTC hours)."""
    async with db.read() as session:
        reach = await _state(session)
        split = min(max(start, reach), end)
        by_hour, by_route = await _rolled_sums(session, start, split)
        live = await ended_between(session, split, end)
        for (hour, model, channel), counts in live.by_hour.items():
            by_hour[hour].add(counts)
            by_route[(model, channel)].add(counts)
        ranked = await _top_users(session, start, split, live, top)
        names = dict(
            (
                await session.execute(
                    select(User.id, User.username).where(User.id.in_([u for u, _ in ranked]))
                )
            )
            .tuples()
            .all()
        )
        channels = dict((await session.execute(select(Channel.id, Channel.name))).tuples().all())
        in_flight = await session.scalar(
            select(func.count())
            .select_from(AiTask)
            .where(AiTask.status.in_([s.value for s in ACTIVE]))
        )
    return Report(
        start=start,
        end=end,
        rolled_to=reach,
        by_hour=dict(by_hour),
        by_route=dict(by_route),
        top_users=[(u, names.get(u), c) for u, c in ranked],
        channel_names={int(k): str(v) for k, v in channels.items()},
        in_flight=int(in_flight or 0),
    )


def group(counts: Iterable[tuple[Any, Counts]], key: Any) -> dict[Any, Counts]:
    out: dict[Any, Counts] = defaultdict(Counts)
    for k, c in counts:
        out[key(k)].add(c)
    return dict(out)


MAX_RANGE = timedelta(days=400)


def window(
    granularity: str, start: datetime | None, end: datetime | None, tz: str, now: datetime
) -> tuple[datetime, datetime]:
    """The [start, end) in UTC that ``/admin/stats`` reports on, from the site's local
    times asked (none: the last 24 hours, or 30 days by the day): whole hours, or whole
    days on the site's clock, as the rollup holds them."""
    end_at = to_utc(end, tz) if end else now
    default_span = timedelta(hours=24) if granularity == "hour" else timedelta(days=30)
    start_at = to_utc(start, tz) if start else end_at - default_span
    start_at = floor_hour(start_at)
    end_at = floor_hour(end_at) + (HOUR if end_at != floor_hour(end_at) else timedelta(0))
    if granularity == "day":
        start_at = midnight_utc(start_at, tz)
    if end_at <= start_at:
        raise BadRequest("参数错误:end 必须晚于 start")
    if end_at - start_at > MAX_RANGE:
        raise BadRequest(f"参数错误:统计区间最长 {MAX_RANGE.days} 天")
    return start_at, end_at


async def paid_revenue(db: Database, start: datetime, end: datetime) -> tuple[int, str]:
    """The money the top-ups paid in [start, end) brought in, less what was refunded of
    them (minor units), and the currency of the payment settings."""
    async with db.read() as session:
        amount = await session.scalar(
            select(
                func.coalesce(func.sum(PaymentOrder.amount - PaymentOrder.refunded_amount), 0)
            ).where(
                PaymentOrder.paid_at >= start,
                PaymentOrder.paid_at < end,
                PaymentOrder.status.in_(CREDITED),
            )
        )
        currency = await session.scalar(select(PaymentSettings.currency).limit(1))
    return int(amount or 0), currency or "CNY"


async def safety_counts(db: Database, start: datetime, end: datetime) -> dict[str, int]:
    """What the content checks caught in [start, end), by event tier (block, replace,
    review, image: shengtu.safety)."""
    async with db.read() as session:
        rows = await session.execute(
            select(SafetyEvent.tier, func.count())
            .where(SafetyEvent.created_at >= start, SafetyEvent.created_at < end)
            .group_by(SafetyEvent.tier)
        )
        return {str(tier): int(n) for tier, n in rows.tuples()}
