"""``/ws/tasks?token=…``: every status and progress change of the caller's tasks.

A socket lives as long as its credential: the user and token (or key) are checked again
before events are sent and every ``SHENGTU_WS_RECHECK_SECONDS``, so a password change,
expiry, ban or deletion ends it. A user has at most ``SHENGTU_WS_MAX_PER_USER`` sockets on
one process and a process ``SHENGTU_WS_MAX_PER_PROCESS``, of which free accounts (never
credited but by the sign-up bonus: events/service.py) together hold at most
``SHENGTU_WS_FREE_SHARE``, so that sign-ups alone cannot take every socket from paying users.
A socket with nothing to say for ``SHENGTU_WS_IDLE_SECONDS`` is closed. Every close says why,
in its frame's reason. A socket opened with ``?lang=en``, or without ``lang`` but with
``Accept-Language: en`` (a browser sends its own; a page cannot set it), gets a failed task's
reason in English; the event itself is shared by every socket of the user.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from shengtu.api.credentials import bearer_token
from shengtu.api.i18n import english_reason, wants_english
from shengtu.auth.principal import check_client
from shengtu.config import Settings
from shengtu.context import AppContext
from shengtu.errors import ShengtuError
from shengtu.events import service
from shengtu.events.bus import EventBus

router = APIRouter(tags=["events"])

# Close codes in the application range, each with its reason (a frame's reason is at most
# 123 bytes of UTF-8: about 40 Chinese characters).
UNAUTHORIZED = (4401, "未登录或Token过期")
CREDENTIAL_ENDED = (4401, "登录已失效(密码修改、账号停用或Token过期),请重新登录")
TOO_MANY = (4429, "实时连接数已达上限,请关闭其他页面后重试")
FREE_FULL = (4429, "免费账户的实时连接数已达上限,请稍后重试或改用轮询")
SERVER_FULL = (4429, "实时连接数已达服务器上限,请稍后重试或改用轮询")
IDLE = (4408, "连接空闲超时,请重新连接")
# Checked before an event is sent, but not more often than this: a burst of progress
# events costs one read.
EVENT_RECHECK_SECONDS = 1.0
# Published to a user when an operator disables, deletes, demotes or resets them: their
# WebSockets check their credential at once instead of at the next re-check.
ACCOUNT_CHANGED = "account.changed"


def _refusal(bus: EventBus, user_id: int, free: bool, settings: Settings) -> tuple[int, str] | None:
    """Why another socket for ``user_id`` would break a cap, or None."""
    if bus.subscribers_of(user_id) >= settings.ws_max_per_user:
        return TOO_MANY
    if bus.subscriber_count() >= settings.ws_max_per_process:
        return SERVER_FULL
    free_cap = max(1, int(settings.ws_max_per_process * settings.ws_free_share))
    if free and bus.free_subscriber_count() >= free_cap:
        return FREE_FULL
    return None


def _english(websocket: WebSocket) -> bool:
    """Whether the socket's events say why in English: ``?lang=`` (a console's own switch),
    else the handshake's Accept-Language."""
    asked = websocket.query_params.get("lang")
    if asked:
        return asked.lower().startswith("en")
    return wants_english(websocket.scope)


def _in_english(event: object) -> object:
    """A task's event with its failure reason in English; a copy, as each socket has its own."""
    if not isinstance(event, dict):
        return event
    data = event.get("data")
    if not isinstance(data, dict) or not data.get("errorMessage"):
        return event
    return {**event, "data": {**data, "errorMessage": english_reason(data["errorMessage"])}}


async def _close(websocket: WebSocket, why: tuple[int, str]) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code=why[0], reason=why[1])


@router.websocket("/ws/tasks")
async def task_events(websocket: WebSocket) -> None:
    ctx: AppContext = websocket.app.state.ctx
    settings = ctx.settings
    # A browser's WebSocket cannot set headers: ``?token=`` first, then a Bearer header.
    credential = websocket.query_params.get("token") or bearer_token(
        websocket.headers.get("authorization", "")
    )
    # Accept first, then close with a code a browser can read (a refused handshake is
    # only "403").
    try:
        principal = await ctx.auth.principal(credential or "")
        check_client(principal, lambda: ctx.clients.of(websocket.scope))
    except ShengtuError:
        await websocket.accept()
        await _close(websocket, UNAUTHORIZED)
        return
    bus = ctx.bus
    english = _english(websocket)
    free = False
    if settings.ws_free_share < 1 and not principal.is_admin:
        free = await service.free_account(ctx.db, principal.user_id)
    # The caps are checked and the socket counted with no await in between: racing
    # connections cannot all pass one check.
    refusal = _refusal(bus, principal.user_id, free, settings)
    if refusal is not None:
        await websocket.accept()
        await _close(websocket, refusal)
        return
    async with bus.subscribe(principal.user_id, free=free) as queue:
        await websocket.accept()
        await websocket.send_json({"event": "connected", "data": {"userId": principal.user_id}})
        last_active = checked_at = time.monotonic()

        async def still_valid() -> bool:
            nonlocal checked_at
            checked_at = time.monotonic()
            try:
                current = await ctx.auth.principal(credential or "")
            except ShengtuError:
                return False
            return current.user_id == principal.user_id

        async def drain_client() -> None:
            nonlocal last_active
            # Reading is how a close from the client is noticed.
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    await websocket.receive_text()
                    last_active = time.monotonic()

        reader = asyncio.create_task(drain_client())
        getter: asyncio.Task[object] | None = None
        try:
            while not reader.done():
                now = time.monotonic()
                if now - last_active >= settings.ws_idle_seconds:
                    await _close(websocket, IDLE)
                    break
                if now - checked_at >= settings.ws_recheck_seconds and not await still_valid():
                    await _close(websocket, CREDENTIAL_ENDED)
                    break
                wake = min(
                    last_active + settings.ws_idle_seconds, checked_at + settings.ws_recheck_seconds
                )
                if getter is None:
                    getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait(
                    {getter, reader},
                    timeout=max(0.05, wake - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getter not in done:
                    continue
                event, getter = getter.result(), None
                forced = isinstance(event, dict) and event.get("event") == ACCOUNT_CHANGED
                if (forced or time.monotonic() - checked_at >= EVENT_RECHECK_SECONDS) and not (
                    await still_valid()
                ):
                    await _close(websocket, CREDENTIAL_ENDED)
                    break
                if forced:
                    continue
                await websocket.send_json(_in_english(event) if english else event)
                last_active = time.monotonic()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            reader.cancel()
            if getter is not None:
                getter.cancel()
