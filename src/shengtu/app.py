"""create_app(): routers, lifespan, error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import text
from starlette.types import ASGIApp, Receive, Scope, Send

from shengtu import __version__
from shengtu.accounts.admin_router import router as admin_users_router
from shengtu.accounts.router import router as accounts_router
from shengtu.api import pages
from shengtu.api.envelope import ERROR_RESPONSES, Envelope, ok
from shengtu.api.errors import install_error_handlers
from shengtu.api.i18n import EnglishMessages
from shengtu.api.middleware import EdgeGuardMiddleware, RequestIdMiddleware
from shengtu.audit.admin_router import router as audit_router
from shengtu.catalog.admin_router import router as admin_catalog_router
from shengtu.catalog.router import router as catalog_router
from shengtu.channels.admin_router import router as channels_router
from shengtu.codes.admin_router import router as admin_codes_router
from shengtu.codes.router import router as codes_router
from shengtu.context import AppContext
from shengtu.edge.hot import HotReads
from shengtu.edge.metrics_route import guarded_scrape, serve_on_own_address
from shengtu.errors import NotFound
from shengtu.events.relay import EventRelay
from shengtu.events.router import router as events_router
from shengtu.groups.admin_router import router as groups_router
from shengtu.ledger_audit.admin_router import router as ledger_audit_router
from shengtu.moderation.router import router as moderation_router
from shengtu.openai_compat import errors as openai_errors
from shengtu.openai_compat.router import router as openai_router
from shengtu.payments.admin_router import router as admin_payments_router
from shengtu.payments.router import router as payments_router
from shengtu.points.router import router as points_router
from shengtu.safety.admin_router import router as safety_router
from shengtu.stats.admin_router import router as stats_router
from shengtu.storage.router import router as files_router
from shengtu.tasks.admin_router import router as admin_tasks_router
from shengtu.tasks.router import router as tasks_router
from shengtu.tasks.worker import Worker
from shengtu.webhooks.router import router as webhooks_router

WEB_DIR = Path(__file__).parent / "web"
CONSOLE_ASSETS = frozenset(
    {"common.js", "console.js", "topup.js", "admin.js", "admin-pay.js", "console.css"}
)


class ShengtuApp(FastAPI):
    """FastAPI behind Shengtu's own edge: request ids and the access log, the edge guard,
    the hot reads (:mod:`shengtu.edge.hot`), then FastAPI's stack.

    The edge sits outside FastAPI's outer layers (its error middleware, telemetry and
    body-limit wrappers), not among its user middleware: each wraps every request and its
    every ``send``, about a tenth of a hot read's CPU, for nothing the hot reads need (they
    answer their own failures in the envelope). Outside, a 500 from FastAPI's error layer
    also carries the request id, in its header and in its log line.
    """

    def __init__(self, ctx: AppContext, *, hot_reads: bool, **fastapi: Any) -> None:
        edge_limit = ctx.settings.max_upload_bytes + 1024 * 1024
        # The backstop for chunked bodies (answered in plain text, outside our middleware);
        # EdgeGuardMiddleware answers declared ones first, at half this, in the envelope.
        super().__init__(max_body_size=2 * edge_limit, **fastapi)
        stack = super().__call__
        inner: ASGIApp = HotReads(stack, ctx) if hot_reads else stack
        self.edge = RequestIdMiddleware(
            EnglishMessages(EdgeGuardMiddleware(inner, max_body=edge_limit))
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.edge(scope, receive, send)


def create_app(ctx: AppContext, *, with_worker: bool = True, hot_reads: bool = True) -> ShengtuApp:
    """``hot_reads=False`` leaves every request to the FastAPI routes: the reference the
    hot path (:mod:`shengtu.edge.hot`) is tested against."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ctx.start()
        relay = EventRelay(ctx.db, ctx.bus, ctx.settings.timezone, ctx.settings.event_sweep_seconds)
        relay.start()
        worker_task: asyncio.Task[None] | None = None
        worker: Worker | None = None
        if with_worker:
            worker = Worker(ctx)
            worker_task = asyncio.create_task(worker.run())
        app.state.worker = ctx.taker = worker
        metrics_server = serve_on_own_address(ctx)
        # What start-up made (modules, models, compiled statements) lives as long as the
        # process: out of the collector's sight, its full passes only walk the requests' own.
        gc.freeze()
        try:
            yield
        finally:
            if worker is not None and worker_task is not None:
                ctx.taker = None
                worker.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(worker_task, 15)
            if metrics_server is not None:
                metrics_server.cancel()
            await relay.aclose()
            await ctx.aclose()

    app = ShengtuApp(
        ctx,
        hot_reads=hot_reads,
        title="Shengtu 生图",
        version=__version__,
        lifespan=lifespan,
        # Served below, with its security headers.
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_error_handlers(app, [(openai_errors.PREFIX, openai_errors.openai_error)])
    # FastAPI tries routes in order, a regex each: the routes clients call in volume come
    # first (tasks, the OpenAI API, pictures, events), the consoles' and admins' after.
    app.include_router(tasks_router, responses=ERROR_RESPONSES)
    # In OpenAI's error shape, not the envelope: its own responses say so.
    app.include_router(openai_router)
    for router in (
        files_router,
        events_router,
        points_router,
        ledger_audit_router,
        accounts_router,
        catalog_router,
        admin_catalog_router,
        codes_router,
        channels_router,
        admin_users_router,
        groups_router,
        admin_codes_router,
        admin_tasks_router,
        stats_router,
        audit_router,
        webhooks_router,
        safety_router,
        moderation_router,
        payments_router,
        admin_payments_router,
    ):
        app.include_router(router, responses=ERROR_RESPONSES)

    @app.get(
        "/healthz",
        response_model=Envelope[dict[str, str]],
        tags=["health"],
        responses=ERROR_RESPONSES,
    )
    async def healthz() -> Envelope[dict[str, str]]:
        async with ctx.db.read() as session:
            await session.execute(text("SELECT 1"))
        return ok({"status": "ok", "version": __version__})

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/console/")

    @app.get("/console/", include_in_schema=False)
    async def console() -> FileResponse:
        return pages.page(WEB_DIR / "index.html")

    @app.get("/console/admin", include_in_schema=False)
    async def operator_console() -> FileResponse:
        return pages.page(WEB_DIR / "admin.html")

    @app.get("/console/{name}", include_in_schema=False)
    async def console_asset(name: str) -> FileResponse:
        if name not in CONSOLE_ASSETS:
            raise NotFound("文件不存在")
        return pages.static(WEB_DIR / name)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        return await guarded_scrape(ctx, request)

    docs = pages.swagger_page("/openapi.json", f"{app.title} - API")

    @app.get("/docs", include_in_schema=False)
    async def api_docs() -> Response:
        return docs

    return app
