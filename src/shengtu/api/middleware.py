"""Request ids and access logs, as plain ASGI (no per-request task or body copy)."""

from __future__ import annotations

import logging
import re
import secrets
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shengtu import metrics
from shengtu.api.errors import error_response
from shengtu.logs import get_logger

log = get_logger("shengtu.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
# The scope key under which a route answered in front of FastAPI (shengtu.edge.hot) names
# its template, for the access log and /metrics.
ROUTE_KEY = "shengtu.route"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Bound once, after logging is configured: the module's lazy proxy builds a new
        # bound logger on every call, ~2 µs, a few percent of a hot read, even when the
        # level filters the line out.
        self.log = log.bind()
        self.logs_requests = self.log.is_enabled_for(logging.INFO)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _SAFE_ID.match(incoming) else secrets.token_hex(8)
        id_header = (b"x-request-id", request_id.encode())
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                nonlocal status
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["type"] == "http":
                metrics.http_request(
                    route_label(scope),
                    scope.get("method", ""),
                    status,
                    time.perf_counter() - started,
                )
            if self.logs_requests and scope["type"] == "http":
                self.log.info(
                    "request",
                    method=scope.get("method"),
                    path=scope.get("path"),
                    status=status,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                )
            structlog.contextvars.clear_contextvars()


def route_label(scope: Scope) -> str:
    """The route's template (never the raw path: a label per task number would grow
    without end): FastAPI's route, or the one a hot read named."""
    template = getattr(scope.get("route"), "path", None) or scope.get(ROUTE_KEY)
    return template if isinstance(template, str) else "unmatched"


async def send_envelope(
    scope: Scope, receive: Receive, send: Send, code: int, message: str
) -> None:
    """Answer in the envelope from plain ASGI, closing the connection (the body is unread)."""
    response = error_response(code, message, headers={"connection": "close"})
    await response(scope, receive, send)


class EdgeGuardMiddleware:
    """Refuse what no route should see, before any route reads it.

    A declared body over the limit gets 413 in the envelope (FastAPI's own ``max_body_size``
    stays as the backstop for chunked bodies; it answers in plain text). A NUL byte in the
    path or query gets 400: PostgreSQL cannot store it, and it never means anything here;
    request bodies refuse it in :class:`shengtu.api.inputs.RequestBody`.
    """

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_body:
                await send_envelope(scope, receive, send, 413, "请求体过大")
                return
        if scope["type"] in ("http", "websocket") and _has_nul_in_target(scope):
            if scope["type"] == "http":
                await send_envelope(scope, receive, send, 400, "参数错误:地址中含有非法字符(NUL)")
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


def _has_nul_in_target(scope: Scope) -> bool:
    query: bytes = scope.get("query_string") or b""
    return "\x00" in scope.get("path", "") or b"\x00" in query or b"%00" in query.lower()
