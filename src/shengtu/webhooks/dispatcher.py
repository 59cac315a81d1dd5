"""Delivers the outbox: due messages, signed the Standard Webhooks way, retried with
growing waits, every attempt logged.

A message is held while it is being sent (``locked_until``); a dispatcher that dies
mid-send leaves a hold that runs out, and the next dispatcher sends the message again
with the same ``webhook-id``. Receivers therefore see a message at least once and drop
repeats by its id, as the standard asks.

Fair to every user: a user's messages are claimed only under the lock of the user's
lane row (:class:`WebhookLane`), at most SHENGTU_WEBHOOK_USER_CONCURRENCY of them in
flight at once and SHENGTU_WEBHOOK_ENDPOINT_CONCURRENCY per endpoint, counted over every
process; and the users with due messages are served least recently served first. An
account with slow endpoints and a backlog holds a few slots, not the queue.

What an attempt records never tells a refused connection from a silent one: both are
"连接失败", and both take the whole time limit. Otherwise the attempt log would scan
any public host's ports for whoever makes endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import ColumnElement, and_, case, func, insert, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from standardwebhooks.webhooks import Webhook

from shengtu import __version__, metrics
from shengtu.context import AppContext
from shengtu.db import utcnow
from shengtu.logs import get_logger
from shengtu.models.tasks import AiTask
from shengtu.models.webhooks import (
    CallbackSecret,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookLane,
    WebhookMessage,
)
from shengtu.netguard import UnsafeURL
from shengtu.storage.fetch import pinned_request
from shengtu.webhooks import jobs, outbox
from shengtu.webhooks.service import trusted_origins

log = get_logger("shengtu.webhooks")
ANSWER_KEPT = 500
# Beyond one attempt's time limit (which bounds the whole send, the name lookup
# included): a hold outlives any send, and a dead dispatcher's runs out soon after.
HOLD_MARGIN = 10.0
# Said of every attempt that found no connection: refused, dropped, unreachable, or no
# answer to the handshake within the time limit, alike.
NO_CONNECTION = "连接失败:无法与回调地址建立连接"
# httpcore's trace events that mean a connection is up (a new one, or one reused).
_CONNECTED = ("connection.connect_tcp.complete", "connection.connect_unix_socket.complete")
_TALKING = ("http11.", "http2.")


def _free(now: datetime) -> ColumnElement[bool]:
    return or_(WebhookMessage.locked_until.is_(None), WebhookMessage.locked_until < now)


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(
        WebhookMessage.status == "pending", WebhookMessage.next_attempt_at <= now, _free(now)
    )


class Dispatcher:
    def __init__(self, ctx: AppContext, task_data: Callable[[AiTask], dict[str, Any]]) -> None:
        """``task_data``: the task as the API shows it, given by the tasks' owner (webhooks
        sit below tasks: the state machine writes the outbox)."""
        self.ctx = ctx
        self.task_data = task_data
        self.settings = ctx.settings
        self.waits = self.settings.webhook_waits
        self.trusted = trusted_origins(self.settings)
        timeout = self.settings.webhook_timeout_seconds
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False
        )
        self._sending: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        # Set when a delivery ends (or on stop): the loop claims again at once, not at its
        # next poll, so the caps on deliveries in flight do not cap their rate.
        self._freed = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()
        self._freed.set()

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._freed.set()

    async def run(self) -> None:
        pruner: asyncio.Task[None] | None = None
        prune_at = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() >= prune_at and (pruner is None or pruner.done()):
                    prune_at = time.monotonic() + self.settings.sweep_interval_seconds
                    pruner = asyncio.create_task(self._prune())
                self._freed.clear()
                room = self.settings.webhook_concurrency - len(self._sending)
                if room > 0:
                    try:
                        for message_id in await self.claim(room):
                            task = asyncio.create_task(self.deliver(message_id))
                            self._sending.add(task)
                            task.add_done_callback(self._sent)
                    except Exception:
                        log.exception("webhook_claim_failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), self.settings.webhook_poll_seconds)
        finally:
            if pruner is not None:
                pruner.cancel()
            if self._sending:
                await asyncio.wait(self._sending, timeout=self.settings.webhook_timeout_seconds)
            await self._http.aclose()

    async def _prune(self) -> None:
        try:
            gone = await jobs.prune(self.ctx)
            if gone:
                log.info("webhook_messages_pruned", messages=gone)
        except Exception:
            log.exception("webhook_prune_failed")

    async def claim(self, limit: int) -> list[int]:
        """Up to ``limit`` due messages, held for this dispatcher: the users with due
        messages and room under their cap, least recently served first, each given a
        share of the room."""
        now = utcnow()
        hold = now + timedelta(seconds=self.settings.webhook_timeout_seconds + HOLD_MARGIN)
        users = await self._users_due(now, limit)
        if not users:
            return []
        await self._open_lanes([user_id for user_id, served in users if served is None])
        share = max(1, math.ceil(limit / len(users)))
        claimed: list[int] = []
        for user_id, _ in users:
            room = limit - len(claimed)
            if room <= 0:
                break
            claimed += await self._claim_for(user_id, min(share, room), now, hold)
        return claimed

    async def _users_due(self, now: datetime, limit: int) -> list[tuple[int, datetime | None]]:
        """(user, when last served) of the users with a due message and fewer than their
        cap in flight, never or least recently served first, then oldest message first.
        One pass over the pending messages that are due or held (a held one was due)."""
        held = WebhookMessage.locked_until >= now
        busy = func.sum(case((held, 1), else_=0))
        ready = func.sum(case((held, 0), else_=1))
        oldest = func.min(case((held, null()), else_=WebhookMessage.next_attempt_at))
        async with self.ctx.db.read() as session:
            rows = await session.execute(
                select(WebhookMessage.user_id, WebhookLane.served_at)
                .outerjoin(WebhookLane, WebhookLane.user_id == WebhookMessage.user_id)
                .where(WebhookMessage.status == "pending", WebhookMessage.next_attempt_at <= now)
                .group_by(WebhookMessage.user_id, WebhookLane.served_at)
                .having(ready > 0, busy < self.settings.webhook_user_concurrency)
                .order_by(WebhookLane.served_at.is_not(None), WebhookLane.served_at, oldest)
                .limit(limit)
            )
            return [(int(user_id), served) for user_id, served in rows]

    async def _open_lanes(self, user_ids: list[int]) -> None:
        """A lane row for each of these users that has none yet (racing dispatchers make
        it once: the insert ignores a row that is there)."""
        if not user_ids:
            return
        # In one order everywhere: two dispatchers' upserts of the same users never deadlock.
        rows = [{"user_id": user_id, "served_at": None} for user_id in sorted(user_ids)]
        dialect = self.ctx.db.dialect
        stmt: Any
        if dialect == "postgresql":
            stmt = postgresql.insert(WebhookLane).values(rows).on_conflict_do_nothing()
        elif dialect == "sqlite":
            stmt = sqlite.insert(WebhookLane).values(rows).on_conflict_do_nothing()
        else:
            stmt = insert(WebhookLane).values(rows).prefix_with("IGNORE")
        async with self.ctx.db.write() as session:
            await session.execute(stmt)

    async def _claim_for(
        self, user_id: int, wanted: int, now: datetime, hold: datetime
    ) -> list[int]:
        """Up to ``wanted`` of the user's due messages, within the user's and each
        endpoint's cap, endpoints in turn; under the user's lane lock, which another
        dispatcher claiming for this user holds (then this one skips the user)."""
        per_user = self.settings.webhook_user_concurrency
        per_endpoint = self.settings.webhook_endpoint_concurrency
        async with self.ctx.db.write() as session:
            lane = await session.scalar(
                select(WebhookLane.user_id)
                .where(WebhookLane.user_id == user_id)
                .with_for_update(skip_locked=True)
            )
            if lane is None:
                return []
            # Read after the lock is taken: every claim for this user committed before.
            in_flight = await session.execute(
                select(WebhookMessage.endpoint_id, WebhookMessage.url, func.count())
                .where(
                    WebhookMessage.user_id == user_id,
                    WebhookMessage.status == "pending",
                    WebhookMessage.locked_until >= now,
                )
                .group_by(WebhookMessage.endpoint_id, WebhookMessage.url)
            )
            busy: dict[int | str, int] = {}
            for endpoint_id, url, count in in_flight:
                key = url if endpoint_id is None else endpoint_id
                busy[key] = busy.get(key, 0) + int(count)
            room = min(wanted, per_user - sum(busy.values()))
            if room <= 0:
                return []
            turn = (
                func.row_number()
                .over(
                    partition_by=(WebhookMessage.endpoint_id, WebhookMessage.url),
                    order_by=(WebhookMessage.next_attempt_at, WebhookMessage.id),
                )
                .label("turn")
            )
            ranked = (
                select(
                    WebhookMessage.id,
                    WebhookMessage.endpoint_id,
                    WebhookMessage.url,
                    WebhookMessage.next_attempt_at,
                    turn,
                )
                .where(WebhookMessage.user_id == user_id, _due(now))
                .subquery()
            )
            candidates = await session.execute(
                select(ranked.c.id, ranked.c.endpoint_id, ranked.c.url)
                .where(ranked.c.turn <= per_endpoint)
                .order_by(ranked.c.turn, ranked.c.next_attempt_at, ranked.c.id)
                .limit(room * per_endpoint + 50)
            )
            chosen: list[int] = []
            for message_id, endpoint_id, url in candidates:
                if len(chosen) >= room:
                    break
                key = url if endpoint_id is None else endpoint_id
                if busy.get(key, 0) >= per_endpoint:
                    continue
                busy[key] = busy.get(key, 0) + 1
                chosen.append(message_id)
            claimed = []
            # By id, the order an endpoint's deletion locks them in: the two never deadlock.
            for message_id in sorted(chosen):
                result = await session.execute(
                    update(WebhookMessage)
                    .where(
                        WebhookMessage.id == message_id,
                        WebhookMessage.status == "pending",
                        _free(now),
                    )
                    .values(locked_until=hold)
                )
                if getattr(result, "rowcount", 0) == 1:
                    claimed.append(message_id)
            if claimed:
                await session.execute(
                    update(WebhookLane).where(WebhookLane.user_id == user_id).values(served_at=now)
                )
        return claimed

    async def deliver(self, message_id: int) -> None:
        try:
            await self._deliver(message_id)
        except Exception:
            log.exception("webhook_delivery_failed", message_id=message_id)

    async def _deliver(self, message_id: int) -> None:
        async with self.ctx.db.read() as session:
            message = await session.get(WebhookMessage, message_id)
        if message is None or message.status != "pending":
            return
        known = {
            "msg_id": message.msg_id,
            "task_no": message.task_no,
            "request_id": message.request_id,
        }
        # Every line of this delivery (its record, or why it broke) says which it is.
        with structlog.contextvars.bound_contextvars(
            **{k: v for k, v in known.items() if v is not None}
        ):
            await self._attempt(message)

    async def _attempt(self, message: WebhookMessage) -> None:
        async with self.ctx.db.read() as session:
            sealed: str | None = None
            stopped = False
            if message.endpoint_id is not None:
                endpoint = await session.get(WebhookEndpoint, message.endpoint_id)
                stopped = endpoint is None or not endpoint.enabled
                sealed = None if endpoint is None else endpoint.sealed_secret
            else:
                sealed = await session.scalar(
                    select(CallbackSecret.sealed_secret).where(
                        CallbackSecret.user_id == message.user_id
                    )
                )
        if stopped:
            await self._record(message, None, 0, None, "端点已停用,不再投递", give_up=True)
            return
        body = message.body
        if body is None:
            body = await self._body(message)
            async with self.ctx.db.write() as session:
                await session.execute(
                    update(WebhookMessage)
                    .where(WebhookMessage.id == message.id, WebhookMessage.body.is_(None))
                    .values(body=body)
                )
            # Another dispatcher may have fixed it first: send what the row holds.
            async with self.ctx.db.read() as session:
                body = (
                    await session.scalar(
                        select(WebhookMessage.body).where(WebhookMessage.id == message.id)
                    )
                    or body
                )
        if sealed is None:
            await self._record(message, None, 0, None, "回调签名密钥已删除,无法签名", give_up=True)
            return
        secret = self.ctx.key_box.open(sealed)
        started = time.monotonic()
        status, answer, error = await self._send(message, body, secret)
        latency = int((time.monotonic() - started) * 1000)
        await self._record(message, status, latency, answer, error)

    async def _body(self, message: WebhookMessage) -> str:
        """``{"type", "timestamp", "data"}``: the data is the task as the API shows it."""
        data: dict[str, object]
        if message.event == outbox.TEST:
            data = {"message": "这是一条测试消息", "endpointId": message.endpoint_id}
        else:
            async with self.ctx.db.read() as session:
                row = await session.scalar(
                    select(AiTask).where(
                        AiTask.task_no == message.task_no, AiTask.user_id == message.user_id
                    )
                )
            data = self.task_data(row) if row else {}
        payload = {
            "type": message.event,
            "timestamp": message.created_at.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
            "data": data,
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    async def _send(
        self, message: WebhookMessage, body: str, secret: str
    ) -> tuple[int | None, str | None, str | None]:
        """(status, the answer's start, error): one attempt, pinned, no redirects.

        Until a connection is up, every failure is :data:`NO_CONNECTION` and lasts the
        whole time limit (a refusal is waited out): neither the words nor the time tell
        a closed port from a filtered one. After, a timeout is a timeout."""
        limit = self.settings.webhook_timeout_seconds
        started = time.monotonic()
        connected = False

        async def trace(event: str, _: dict[str, Any]) -> None:
            nonlocal connected
            if event in _CONNECTED or event.startswith(_TALKING):
                connected = True

        try:
            async with asyncio.timeout(limit):
                target, headers, extensions = await pinned_request(message.url, self.trusted)
                now = datetime.now(UTC)
                headers.update(
                    {
                        "content-type": "application/json",
                        "user-agent": f"Shengtu-Webhooks/{__version__}",
                        "webhook-id": message.msg_id,
                        "webhook-timestamp": str(int(now.timestamp())),
                        "webhook-signature": Webhook(secret).sign(message.msg_id, now, body),
                    }
                )
                request = self._http.build_request(
                    "POST",
                    target,
                    content=body.encode(),
                    headers=headers,
                    extensions={**extensions, "trace": trace},
                )
                response = await self._http.send(request, stream=True)
                try:
                    start = b""
                    async for chunk in response.aiter_bytes():
                        start += chunk
                        if len(start) >= ANSWER_KEPT:
                            break
                finally:
                    await response.aclose()
        except UnsafeURL as exc:
            return None, None, f"地址不安全:{exc.message}"[:255]
        except (TimeoutError, httpx.HTTPError) as exc:
            if not connected:
                await asyncio.sleep(max(0.0, limit - (time.monotonic() - started)))
                return None, None, NO_CONNECTION
            if isinstance(exc, TimeoutError | httpx.TimeoutException):
                return None, None, f"超时:{limit:g} 秒内没有回答"
            return None, None, f"连接已建立,但没有收到完整的回答:{type(exc).__name__}"
        answer = start[:ANSWER_KEPT].decode("utf-8", "replace")
        if response.is_redirect:
            return response.status_code, answer, "回调地址返回了重定向,不跟随"
        return response.status_code, answer, None

    async def _record(
        self,
        message: WebhookMessage,
        status: int | None,
        latency_ms: int,
        answer: str | None,
        error: str | None,
        *,
        give_up: bool = False,
    ) -> None:
        ok = error is None and status is not None and 200 <= status < 300
        if not ok and error is None:
            error = f"HTTP {status}"
        now = utcnow()
        attempts = message.attempts + 1
        spent = give_up or attempts > len(self.waits)
        values: dict[str, object] = {
            "attempts": attempts,
            "last_status": status,
            "locked_until": None,
        }
        if ok:
            values.update(status="delivered", delivered_at=now)
        elif spent:
            values["status"] = "failed"
        else:
            values["next_attempt_at"] = now + timedelta(seconds=self.waits[attempts - 1])
        async with self.ctx.db.write() as session:
            # The message first: while this transaction holds its row, deleting its
            # endpoint waits (and then takes this attempt with it); if it is gone
            # already, so is the attempt, and the delivery ends here, quietly.
            moved = await session.execute(
                update(WebhookMessage)
                .where(WebhookMessage.id == message.id, WebhookMessage.status == "pending")
                .values(**values)
            )
            there = getattr(moved, "rowcount", 0) == 1 or (
                await session.scalar(
                    select(WebhookMessage.id)
                    .where(WebhookMessage.id == message.id)
                    .with_for_update()
                )
                is not None
            )
            if there:
                session.add(
                    WebhookAttempt(
                        message_id=message.id,
                        attempted_at=now,
                        status_code=status,
                        latency_ms=latency_ms,
                        response=answer,
                        error=error,
                    )
                )
            if there and spent and not ok and not give_up and message.endpoint_id is not None:
                await session.execute(
                    update(WebhookEndpoint)
                    .where(
                        WebhookEndpoint.id == message.endpoint_id, WebhookEndpoint.enabled.is_(True)
                    )
                    .values(
                        enabled=False,
                        disabled_reason=f"消息 {message.msg_id} 投递 {attempts} 次均失败,"
                        f"已停用(最后:{error})"[:255],
                    )
                )
        metrics.webhook_delivery(message.event, ok)
        # structlog's first argument is "event": the message's event goes by another name.
        # No URL (its query may hold a receiver's token) and never a secret.
        log.info(
            "webhook_attempt",
            msg_id=message.msg_id,
            webhook_event=message.event,
            task_no=message.task_no,
            request_id=message.request_id,
            user_id=message.user_id,
            endpoint_id=message.endpoint_id,
            status=status,
            ok=ok,
            attempt=attempts,
            latency_ms=latency_ms,
            error=error,
            **({} if there else {"message_gone": True}),
        )
