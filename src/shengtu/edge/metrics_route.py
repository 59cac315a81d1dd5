"""``/metrics``: the processes' figures and the database's state, for Prometheus.

Open to a bearer token (``SHENGTU_METRICS_TOKEN``) on the API's port, or to anyone on an
address of its own (``SHENGTU_METRICS_BIND``, e.g. ``127.0.0.1:9464``, for a scraper on
a private network); with neither set, /metrics answers 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Iterator
from typing import Any

import uvicorn
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shengtu import metrics
from shengtu.api.credentials import bearer_token
from shengtu.context import AppContext
from shengtu.db import utcnow
from shengtu.errors import NotFound, Unauthorized
from shengtu.models.channels import Channel, ChannelKey
from shengtu.models.tasks import ACTIVE, AiTask
from shengtu.models.webhooks import WebhookMessage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def database_state(ctx: AppContext) -> list[Any]:
    """Gauges read at each scrape: tasks in flight and due, how late the oldest due one
    is (the workers' lag), open breakers, webhook messages waiting."""
    now = utcnow()
    active = [s.value for s in ACTIVE]
    async with ctx.db.read() as session:
        due, oldest = (
            await session.execute(
                select(func.count(), func.min(AiTask.next_run_at)).where(
                    AiTask.status.in_(active), AiTask.next_run_at <= now
                )
            )
        ).one()
        by_status = (
            await session.execute(
                select(AiTask.status, func.count())
                .where(AiTask.status.in_(active))
                .group_by(AiTask.status)
            )
        ).all()
        keys = (
            await session.execute(
                select(Channel.name, ChannelKey.id, ChannelKey.open_until, ChannelKey.enabled).join(
                    Channel, Channel.id == ChannelKey.channel_id
                )
            )
        ).all()
        waiting = await session.scalar(
            select(func.count())
            .select_from(WebhookMessage)
            .where(WebhookMessage.status == "pending")
        )
    inflight = GaugeMetricFamily(
        "shengtu_tasks_in_flight", "Tasks not yet ended", labels=["status"]
    )
    counts = dict(by_status)
    for status in active:
        inflight.add_metric([status], counts.get(status, 0))
    breakers = GaugeMetricFamily(
        "shengtu_channel_key_breaker_open",
        "1 while an upstream key's breaker is open (or the key is disabled)",
        labels=["channel", "key_id"],
    )
    for name, key_id, open_until, enabled in keys:
        is_open = not enabled or (open_until is not None and open_until > now)
        breakers.add_metric([name, str(key_id)], 1 if is_open else 0)
    return [
        GaugeMetricFamily("shengtu_tasks_due", "Tasks due for a worker now", value=due or 0),
        GaugeMetricFamily(
            "shengtu_worker_lag_seconds",
            "How long the oldest due task has waited for a worker",
            value=(now - oldest).total_seconds() if oldest is not None else 0.0,
        ),
        inflight,
        breakers,
        GaugeMetricFamily(
            "shengtu_webhook_messages_pending",
            "Webhook messages not yet delivered",
            value=waiting or 0,
        ),
    ]


async def scrape(ctx: AppContext) -> Response:
    return Response(metrics.render(await database_state(ctx)), media_type=CONTENT_TYPE)


async def guarded_scrape(ctx: AppContext, request: Request) -> Response:
    """/metrics on the API's port: only for the bearer of the metrics token."""
    token = ctx.settings.metrics_token
    if not token:
        raise NotFound("接口不存在")
    given = bearer_token(request.headers.get("authorization", ""))
    if given is None or not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("需要 SHENGTU_METRICS_TOKEN 作为 Bearer Token")
    return await scrape(ctx)


def serve_on_own_address(ctx: AppContext) -> asyncio.Task[None] | None:
    """/metrics alone, without a token, on ``SHENGTU_METRICS_BIND``; None when unset."""
    bind = ctx.settings.metrics_bind
    if not bind:
        return None
    host, _, port = bind.rpartition(":")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            response = Response("not found", status_code=404)
        else:
            response = await scrape(ctx)
        await response(scope, receive, send)

    server = _SignalFree(
        uvicorn.Config(
            app, host=host or "127.0.0.1", port=int(port), log_config=None, lifespan="off"
        )
    )
    return asyncio.create_task(server.serve())


class _SignalFree(uvicorn.Server):
    """Signals are the process's main server's (or worker's) to handle."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
