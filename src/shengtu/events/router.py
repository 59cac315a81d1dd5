"""``/ws/tasks?token=…``: every status and progress change of the caller's tasks."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from shengtu.api.deps import bearer_token
from shengtu.context import AppContext
from shengtu.errors import ShengtuError

router = APIRouter(tags=["events"])


@router.websocket("/ws/tasks")
async def task_events(websocket: WebSocket) -> None:
    ctx: AppContext = websocket.app.state.ctx
    # A browser's WebSocket cannot set headers: ``?token=`` first, then a Bearer header.
    token = websocket.query_params.get("token") or bearer_token(
        websocket.headers.get("authorization", "")
    )
    try:
        principal = await ctx.auth.principal(token or "")
    except ShengtuError:
        # Accept, then close with a code a browser can read (a refused handshake is only "403").
        await websocket.accept()
        await websocket.close(code=4401, reason="未登录或Token过期")
        return
    await websocket.accept()
    async with ctx.bus.subscribe(principal.user_id) as queue:
        await websocket.send_json({"event": "connected", "data": {"userId": principal.user_id}})

        async def drain_client() -> None:
            # Reading is how a close from the client is noticed.
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    await websocket.receive_text()

        reader = asyncio.create_task(drain_client())
        try:
            while not reader.done():
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                await websocket.send_json(getter.result())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            reader.cancel()
