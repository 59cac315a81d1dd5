"""Serving: the API (with or without its worker), the worker alone, and the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import uvicorn
from starlette.routing import Mount
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shengtu import metrics
from shengtu.app import create_app
from shengtu.assembly import build_context
from shengtu.config import Settings
from shengtu.context import AppContext
from shengtu.edge.metrics_route import serve_on_own_address
from shengtu.logs import get_logger
from shengtu.payments.demo import SANDBOX_PID, sandbox_merchant_key, sync_sandbox_payment
from shengtu.payments.sandbox.common import PaymentDouble
from shengtu.payments.sandbox.epay import EpayDouble
from shengtu.providers.pacing import Pacing
from shengtu.providers.registry import SandboxEndpoint, build_providers, sandbox_key
from shengtu.providers.sandbox import SandboxState, create_sandbox_app
from shengtu.tasks.worker import Worker

log = get_logger("shengtu")


def run(main: Coroutine[Any, Any, None], *, accepts_connections: bool = True) -> None:
    """Run a server process's main coroutine.

    A process that accepts connections runs on asyncio's own loop: under load uvloop
    accepts about one new connection per pass of the loop. 64 clients connecting to a loop
    busy ~100 ms a pass waited up to 6.7 s to be accepted (0.42 s on asyncio's loop), and
    every new connection's first request waited that long (p99s of 2-8 s on the list and
    submit rows). A process that only makes connections (``shengtu worker``) runs on uvloop
    where it is installed: there it tracked 5,000 tasks on 0.41-0.43 core, against 0.50 on
    asyncio's loop."""
    if accepts_connections:
        asyncio.run(main)
        return
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says TCP; without it a kept-alive response waits ~40 ms (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, with a deadline for a request's headers.

    uvicorn times only the quiet between requests; a client that opens a connection and
    sends its headers a byte a minute (slowloris) holds it for ever. Here the headers of
    each request must be complete within ``header_timeout`` seconds of its first byte
    (of the connection, for the first request), or the connection is closed."""

    header_timeout = 15.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})


class _EmbeddedServer(uvicorn.Server):
    """A server that leaves signals to the process's main server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn(
    app: Any,
    *,
    ws: str = "auto",
    embedded: bool = False,
    header_timeout: float | None = None,
    max_connections: int | None = None,
) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        http=header_timeout_protocol(header_timeout) if header_timeout else "auto",
        # Beyond this many connections (or requests in progress) uvicorn answers 503.
        limit_concurrency=max_connections,
        # uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 and rewrite the
        # peer; who the client is stays Shengtu's call (SHENGTU_TRUSTED_PROXIES).
        proxy_headers=False,
        server_header=False,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        # Longer than a load balancer's idle timeout (often 60 s), so the balancer, not
        # we, closes idle connections: no request is sent into a closing socket.
        timeout_keep_alive=75,
        ws_ping_interval=20,
        ws=ws,
    )
    return (_EmbeddedServer if embedded else uvicorn.Server)(config)


@asynccontextmanager
async def running_sandbox(
    host: str,
    port: int,
    api_key: str,
    latency: float,
    font: str = "",
    scale: float = 1.0,
    payments: PaymentDouble | None = None,
) -> AsyncIterator[SandboxEndpoint]:
    """The sandbox upstream, and ``payments`` (a payment provider's double) beside it."""
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    state = SandboxState(api_key, latency, font, scale)
    extra = [Mount(payments.prefix, routes=payments.routes())] if payments else []
    server = _uvicorn(create_sandbox_app(state, extra), embedded=True)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield SandboxEndpoint(f"http://{host}:{actual}", api_key)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        if payments is not None:
            await payments.aclose()


@asynccontextmanager
async def upstreams(
    settings: Settings, role: Literal["all", "worker"] = "all"
) -> AsyncIterator[AppContext]:
    """The context with its providers: the real upstream, or the sandbox when no key is set."""
    if settings.sandbox_enabled:
        cashier = EpayDouble(SANDBOX_PID, sandbox_merchant_key(settings))
        async with running_sandbox(
            settings.sandbox_host,
            settings.sandbox_port,
            sandbox_key(settings),
            settings.sandbox_latency,
            settings.sandbox_font,
            settings.sandbox_scale,
            payments=cashier,
        ) as endpoint:
            log.warning(
                "sandbox_upstream",
                message="未配置 SHENGTU_SUCHUANG_API_KEY:速创模型由内置沙箱上游生成图片(非真实 AI)",
                sandbox=endpoint.base_url,
                latency=settings.sandbox_latency,
            )
            pacing = Pacing(settings.redis_url, settings.pacing_jitter_seconds)
            ctx = build_context(
                settings, build_providers(settings, endpoint, pacing), role=role, pacing=pacing
            )
            await _sync_sandbox_payment(ctx, endpoint.base_url + cashier.prefix)
            yield ctx
    else:
        log.info("upstream", provider="suchuang", base_url=settings.suchuang_base_url)
        pacing = Pacing(settings.redis_url, settings.pacing_jitter_seconds)
        ctx = build_context(
            settings, build_providers(settings, None, pacing), role=role, pacing=pacing
        )
        await _sync_sandbox_payment(ctx, None)
        yield ctx


async def _sync_sandbox_payment(ctx: AppContext, gateway: str | None) -> None:
    try:
        await sync_sandbox_payment(ctx.db, ctx.key_box, ctx.settings, gateway)
    except Exception:  # a database not migrated yet: the method is the demo's, not vital
        log.exception("sandbox_payment_sync_failed")


async def serve(settings: Settings, *, with_worker: bool = True) -> None:
    sock = bind(settings.host, settings.port)
    metrics.setup(settings)
    if with_worker:
        async with upstreams(settings) as ctx:
            await _serve_app(settings, create_app(ctx, with_worker=True), sock)
    else:
        # Only workers talk upstream; the API needs no provider to accept tasks.
        ctx = build_context(settings, role="api")
        await _serve_app(settings, create_app(ctx, with_worker=False), sock)


async def _serve_app(settings: Settings, app: Any, sock: socket.socket) -> None:
    log.info("serving", url=settings.resolved_public_base_url, port=settings.port)
    await serve_asgi(app, sock, settings)


async def serve_asgi(app: Any, sock: socket.socket, settings: Settings) -> None:
    """Serve any ASGI app with the API's own server settings (the benchmark's baseline
    is served through here too, so the two differ only in the app)."""
    server = _uvicorn(
        app,
        ws="websockets-sansio",
        header_timeout=settings.header_timeout,
        max_connections=settings.max_connections,
    )
    await server.serve(sockets=[sock])


async def work(settings: Settings) -> None:
    metrics.setup(settings)
    async with upstreams(settings, role="worker") as ctx:
        await ctx.start()
        worker = Worker(ctx)
        metrics_server = serve_on_own_address(ctx)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        try:
            await worker.run()
        finally:
            if metrics_server is not None:
                metrics_server.cancel()
            await ctx.aclose()


async def sandbox_forever(settings: Settings, host: str, port: int, api_key: str) -> None:
    async with running_sandbox(
        host, port, api_key, settings.sandbox_latency, settings.sandbox_font, settings.sandbox_scale
    ) as endpoint:
        print(f"sandbox upstream on {endpoint.base_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
