"""``/admin/stats``: tasks, points, upstream cost and margin over time (admins only)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from shengtu.api.envelope import Envelope, ok
from shengtu.auth.deps import AdminDep
from shengtu.context import ContextDep
from shengtu.db import utcnow
from shengtu.stats import service
from shengtu.stats.service import HOUR, Counts
from shengtu.timefmt import fmt, local

router = APIRouter(tags=["admin: stats"])

START_HELP = "本地时间;默认:按小时为 24 小时前,按天为 30 天前"


class StatsRow(BaseModel):
    tasks: int
    completed: int
    failed: int
    # Of the failed, those an upstream refused for their content (not an outage).
    moderated: int = 0
    successRate: float | None
    charged: int
    refunded: int
    net: int
    cost: Decimal
    revenue: Decimal
    margin: Decimal
    p50Seconds: float | None
    p95Seconds: float | None


class SeriesRow(StatsRow):
    time: str


class ModelRow(StatsRow):
    model: str


class ChannelRow(StatsRow):
    # 0: the upstream of the settings (no channel).
    channelId: int
    channelName: str


class UserRow(BaseModel):
    userId: int
    username: str | None
    completed: int
    failed: int
    charged: int
    refunded: int
    net: int


class PaidRevenue(BaseModel):
    """What the top-ups paid in the window brought in (minor units), less refunds: money
    received, beside ``revenue``, which is the points' value."""

    amount: int
    currency: str


class SafetyCounts(BaseModel):
    """What the content checks did in the window: prompts refused (blocked), masked
    (replaced) and flagged for review by the word lists or the moderation service, result
    pictures held for review, and tasks failed because their content was refused, by an
    upstream or by the moderation service (rejected: the totals' ``moderated``)."""

    blocked: int
    replaced: int
    flagged: int
    heldPictures: int
    rejected: int


class StatsOut(BaseModel):
    start: str
    end: str
    granularity: str
    rolledTo: str
    inFlight: int
    totals: StatsRow
    series: list[SeriesRow]
    byModel: list[ModelRow]
    byChannel: list[ChannelRow]
    topUsers: list[UserRow]
    paidRevenue: PaidRevenue
    safety: SafetyCounts


def row(c: Counts, point_price: Decimal) -> StatsRow:
    tasks = c.completed + c.failed
    net = c.charged - c.refunded
    revenue = (Decimal(net) * point_price).quantize(Decimal("0.0001"))
    cost = c.cost.quantize(Decimal("0.0001"))
    return StatsRow(
        tasks=tasks,
        completed=c.completed,
        failed=c.failed,
        moderated=c.moderated,
        successRate=round(c.completed / tasks, 4) if tasks else None,
        charged=c.charged,
        refunded=c.refunded,
        net=net,
        cost=cost,
        revenue=revenue,
        margin=revenue - cost,
        p50Seconds=c.percentile(0.5),
        p95Seconds=c.percentile(0.95),
    )


@router.get("/admin/stats", response_model=Envelope[StatsOut])
async def stats(
    ctx: ContextDep,
    _: AdminDep,
    granularity: Literal["hour", "day"] = "hour",
    start: Annotated[
        datetime | None, Query(description="本地时间;默认:按小时为 24 小时前,按天为 30 天前")
    ] = None,
    end: Annotated[datetime | None, Query(description="本地时间,不含;默认:现在")] = None,
    top: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Envelope[StatsOut]:
    """Tasks that ended in [start, end): by outcome, points charged, refunded and net,
    upstream cost and margin, success rate, p50/p95 time to result; per hour or day, by
    model, by channel, and the top users by net points."""
    settings = ctx.settings
    tz = settings.timezone
    start_at, end_at = service.window(granularity, start, end, tz, utcnow())
    found = await service.report(ctx.db, start_at, end_at, top)
    paid_amount, paid_currency = await service.paid_revenue(ctx.db, start_at, end_at)
    caught = await service.safety_counts(ctx.db, start_at, end_at)
    price = settings.point_price

    def bucket(hour: datetime) -> str:
        if granularity == "day":
            return local(hour, tz).strftime("%Y-%m-%d")
        return local(hour, tz).strftime("%Y-%m-%dT%H:00")

    # Every bucket of the window, the empty ones too: a chart's time axis has no gaps.
    hours = [start_at + HOUR * i for i in range(int((end_at - start_at) / HOUR))]
    series = {bucket(h): Counts() for h in hours}
    for label, counts in service.group(found.by_hour.items(), bucket).items():
        series[label] = counts
    routes = list(found.by_route.items())
    models = service.group(routes, lambda k: k[0])
    channels = service.group(routes, lambda k: k[1])
    totals = Counts()
    for c in series.values():
        totals.add(c)
    return ok(
        StatsOut(
            start=fmt(start_at, tz) or "",
            end=fmt(end_at, tz) or "",
            granularity=granularity,
            rolledTo=fmt(found.rolled_to, tz) or "",
            inFlight=found.in_flight,
            totals=row(totals, price),
            series=[
                SeriesRow(time=t, **row(c, price).model_dump()) for t, c in sorted(series.items())
            ],
            byModel=[
                ModelRow(model=m, **row(c, price).model_dump())
                for m, c in sorted(models.items(), key=lambda kv: -kv[1].charged)
            ],
            byChannel=[
                ChannelRow(
                    channelId=ch,
                    channelName=found.channel_names.get(ch, "默认上游" if ch == 0 else f"#{ch}"),
                    **row(c, price).model_dump(),
                )
                for ch, c in sorted(channels.items())
            ],
            topUsers=[
                UserRow(
                    userId=u,
                    username=name,
                    completed=c.completed,
                    failed=c.failed,
                    charged=c.charged,
                    refunded=c.refunded,
                    net=c.charged - c.refunded,
                )
                for u, name, c in found.top_users
            ],
            paidRevenue=PaidRevenue(amount=paid_amount, currency=paid_currency),
            safety=SafetyCounts(
                blocked=caught.get("block", 0),
                replaced=caught.get("replace", 0),
                flagged=caught.get("review", 0),
                heldPictures=caught.get("image", 0),
                rejected=totals.moderated,
            ),
        )
    )
