"""Delivers the outbox: due messages, signed the Standard Webhooks way, retried with
growing waits, every attempt logged.

A message is held while it is being sent (``locked_until``); a dispatcher that dies
mid-send leaves a hold that runs out, and the next dispatcher sends the message again
with the same ``webhook-id``. Receivers therefore see a message at least once and drop
repeats by its id, as the standard asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import or_, select, update
from standardwebhooks.webhooks import Webhook

from shengtu import __version__, metrics
from shengtu.context import AppContext
from shengtu.db import utcnow
from shengtu.logs import get_logger
from shengtu.netguard import UnsafeURL
from shengtu.storage.fetch import pinned_request
from shengtu.tasks.models import AiTask
from shengtu.tasks.schemas import task_detail
from shengtu.webhooks import outbox
from shengtu.webhooks.models import (
    CallbackSecret,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
)
from shengtu.webhooks.service import trusted_origins

log = get_logger("shengtu.webhooks")
ANSWER_KEPT = 500
# Beyond one attempt's time limit (which bounds the whole send, the name lookup
# included): a hold outlives any send, and a dead dispatcher's runs out soon after.
HOLD_MARGIN = 10.0


class Dispatcher:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.waits = self.settings.webhook_waits
        self.trusted = trusted_origins(self.settings)
        timeout = self.settings.webhook_timeout_seconds
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False
        )
        self._sending: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                room = self.settings.webhook_concurrency - len(self._sending)
                if room > 0:
                    try:
                        for message_id in await self.claim(room):
                            task = asyncio.create_task(self.deliver(message_id))
                            self._sending.add(task)
                            task.add_done_callback(self._sending.discard)
                    except Exception:
                        log.exception("webhook_claim_failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.settings.webhook_poll_seconds)
        finally:
            if self._sending:
                await asyncio.wait(self._sending, timeout=self.settings.webhook_timeout_seconds)
            await self._http.aclose()

    async def claim(self, limit: int) -> list[int]:
        now = utcnow()
        hold = now + timedelta(seconds=self.settings.webhook_timeout_seconds + HOLD_MARGIN)
        free = or_(WebhookMessage.locked_until.is_(None), WebhookMessage.locked_until < now)
        async with self.ctx.db.read() as session:
            due = list(
                await session.scalars(
                    select(WebhookMessage.id)
                    .where(
                        WebhookMessage.status == "pending",
                        WebhookMessage.next_attempt_at <= now,
                        free,
                    )
                    .order_by(WebhookMessage.next_attempt_at)
                    .limit(limit)
                )
            )
        claimed = []
        for message_id in due:
            async with self.ctx.db.write() as session:
                result = await session.execute(
                    update(WebhookMessage)
                    .where(
                        WebhookMessage.id == message_id, WebhookMessage.status == "pending", free
                    )
                    .values(locked_until=hold)
                )
            if getattr(result, "rowcount", 0) == 1:
                claimed.append(message_id)
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
            data = task_detail(row, self.settings.timezone).model_dump() if row else {}
        payload = {
            "type": message.event,
            "timestamp": message.created_at.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
            "data": data,
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    async def _send(
        self, message: WebhookMessage, body: str, secret: str
    ) -> tuple[int | None, str | None, str | None]:
        """(status, the answer's start, error): one attempt, pinned, no redirects."""
        limit = self.settings.webhook_timeout_seconds
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
                    "POST", target, content=body.encode(), headers=headers, extensions=extensions
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
        except TimeoutError:
            return None, None, f"超时:{limit:g} 秒内没有回答"
        except httpx.HTTPError as exc:
            return None, None, f"连接失败:{type(exc).__name__}"
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
            await session.execute(
                update(WebhookMessage)
                .where(WebhookMessage.id == message.id, WebhookMessage.status == "pending")
                .values(**values)
            )
            if spent and not ok and not give_up and message.endpoint_id is not None:
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
        log.info(
            "webhook_attempt",
            msg_id=message.msg_id,
            event=message.event,
            task_no=message.task_no,
            status=status,
            ok=ok,
            attempt=attempts,
            latency_ms=latency_ms,
            error=error,
        )
