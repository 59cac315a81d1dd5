"""A user's webhook endpoints, their messages and attempts, and the per-task callbacks."""

from __future__ import annotations

import base64
import math
import secrets
from datetime import timedelta

import structlog
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.config import Settings
from shengtu.context import AppContext
from shengtu.db import Database, utcnow
from shengtu.errors import BadRequest, Conflict, NotFound, TooManyRequests
from shengtu.models.webhooks import (
    CallbackSecret,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
)
from shengtu.netguard import UnsafeURL, check_public_url, parse_http_url
from shengtu.storage.fetch import origin
from shengtu.webhooks import outbox

MAX_ENDPOINTS = 10
MESSAGE_STATUSES = ("pending", "delivered", "failed")


def new_secret() -> str:
    """``whsec_`` and 32 random bytes in base64, as Standard Webhooks' libraries read it."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def trusted_origins(settings: Settings) -> frozenset[str]:
    """SHENGTU_WEBHOOK_TRUSTED_ORIGINS as ``scheme://host:port``, as origin() spells them."""
    return frozenset(origin(o) for o in settings.webhook_trusted)


async def check_url(ctx: AppContext, url: str) -> str:
    """A URL the server may send to: http(s), and public unless its origin is trusted."""
    try:
        parse_http_url(url)
        if origin(url) not in trusted_origins(ctx.settings):
            await check_public_url(url, resolver=ctx.resolver)
    except UnsafeURL as exc:
        raise BadRequest(f"参数错误:回调地址不可用({exc.message})") from exc
    return url.strip()


def endpoint_not_found(endpoint_id: int) -> NotFound:
    return NotFound(f"Webhook 端点 {endpoint_id} 不存在")


async def create_endpoint(
    ctx: AppContext, user_id: int, url: str, description: str | None
) -> tuple[WebhookEndpoint, str]:
    url = await check_url(ctx, url)
    secret = new_secret()
    async with ctx.db.write() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(WebhookEndpoint)
            .where(WebhookEndpoint.user_id == user_id)
        )
        if (count or 0) >= MAX_ENDPOINTS:
            raise Conflict(f"每个用户最多 {MAX_ENDPOINTS} 个 Webhook 端点")
        row = WebhookEndpoint(
            user_id=user_id,
            url=url,
            description=description,
            sealed_secret=ctx.key_box.seal(secret),
            enabled=True,
            created_at=utcnow(),
        )
        session.add(row)
        await session.flush()
    return row, secret


async def endpoints(session: AsyncSession, user_id: int) -> list[WebhookEndpoint]:
    rows = await session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.user_id == user_id)
        .order_by(WebhookEndpoint.id)
    )
    return list(rows)


async def endpoint(
    session: AsyncSession, user_id: int, endpoint_id: int, *, lock: bool = False
) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.user_id == user_id
    )
    row = await session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise endpoint_not_found(endpoint_id)
    return row


# Floating-point slack: N intervals of period/N may sum to a hair over the period.
_SLACK = 1e-6


def take_manual_turn(settings: Settings, row: WebhookEndpoint | CallbackSecret) -> None:
    """One test or redelivery to ``row``'s URL, within SHENGTU_WEBHOOK_MANUAL_PER_MINUTE
    (a cell rate, as the request limits count: that many at once, then one more every
    60/N s); else 429 with Retry-After. The row is locked by the caller: the count is
    exact whatever the number of API processes, and needs no Redis."""
    amount = settings.webhook_manual_per_minute
    period = timedelta(seconds=60)
    interval = period / amount
    now = utcnow()
    arrival = max(row.manual_tat or now, now) + interval
    wait = (arrival - now - period).total_seconds()
    if wait > _SLACK:
        retry = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"请求过于频繁:每个 Webhook 端点每分钟最多 {amount} 次测试或重新投递,"
            f"请 {retry} 秒后再试",
            retry_after=retry,
        )
    row.manual_tat = arrival


def _request_id() -> str | None:
    """The request this runs for (bound by the request-id middleware), for the logs of
    the delivery it asks for."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value[:64] if isinstance(value, str) else None


async def delete_endpoint(ctx: AppContext, user_id: int, endpoint_id: int) -> None:
    async with ctx.db.write() as session:
        row = await endpoint(session, user_id, endpoint_id)
        # Its messages and their attempts go with it (no SQLite foreign-key cascade here).
        ids = select(WebhookMessage.id).where(WebhookMessage.endpoint_id == row.id)
        await session.execute(delete(WebhookAttempt).where(WebhookAttempt.message_id.in_(ids)))
        await session.execute(delete(WebhookMessage).where(WebhookMessage.endpoint_id == row.id))
        await session.delete(row)


async def enable_endpoint(ctx: AppContext, user_id: int, endpoint_id: int) -> WebhookEndpoint:
    async with ctx.db.write() as session:
        row = await endpoint(session, user_id, endpoint_id)
        row.enabled, row.disabled_reason = True, None
    return row


async def send_test(ctx: AppContext, user_id: int, endpoint_id: int) -> WebhookMessage:
    async with ctx.db.write() as session:
        row = await endpoint(session, user_id, endpoint_id, lock=True)
        if not row.enabled:
            raise Conflict(f"Webhook 端点 {endpoint_id} 已停用,请先启用")
        take_manual_turn(ctx.settings, row)
        now = utcnow()
        message = WebhookMessage(
            msg_id=outbox.new_msg_id(),
            user_id=user_id,
            endpoint_id=row.id,
            url=row.url,
            event=outbox.TEST,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            request_id=_request_id(),
            created_at=now,
        )
        session.add(message)
        await session.flush()
    return message


async def messages(
    session: AsyncSession,
    user_id: int,
    *,
    endpoint_id: int | None,
    status: str | None,
    task_no: str | None,
    page: int,
    size: int,
) -> tuple[list[WebhookMessage], int]:
    if status is not None and status not in MESSAGE_STATUSES:
        raise BadRequest(f"参数错误:status 只能是 {', '.join(MESSAGE_STATUSES)}")
    where = [WebhookMessage.user_id == user_id]
    if endpoint_id is not None:
        where.append(WebhookMessage.endpoint_id == endpoint_id)
    if status is not None:
        where.append(WebhookMessage.status == status)
    if task_no is not None:
        where.append(WebhookMessage.task_no == task_no)
    total = await session.scalar(select(func.count()).select_from(WebhookMessage).where(*where))
    rows = await session.scalars(
        select(WebhookMessage)
        .where(*where)
        .order_by(WebhookMessage.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    return list(rows), int(total or 0)


async def message(
    session: AsyncSession, user_id: int, msg_id: str
) -> tuple[WebhookMessage, list[WebhookAttempt]]:
    row = await session.scalar(
        select(WebhookMessage).where(
            WebhookMessage.msg_id == msg_id, WebhookMessage.user_id == user_id
        )
    )
    if row is None:
        raise NotFound(f"Webhook 消息 {msg_id[:48]} 不存在")
    attempts = await session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.message_id == row.id)
        .order_by(WebhookAttempt.id)
    )
    return row, list(attempts)


async def redeliver(ctx: AppContext, user_id: int, msg_id: str) -> WebhookMessage:
    """Send a message again, with the same id, starting its retries over."""
    async with ctx.db.write() as session:
        row, _ = await message(session, user_id, msg_id)
        if row.status == "pending" and row.attempts == 0:
            raise Conflict(f"Webhook 消息 {msg_id[:48]} 正在等待首次投递")
        # The message's row first, then its endpoint's, as a dispatcher recording an
        # attempt takes them (no deadlock); a refusal below rolls this back.
        now, request_id = utcnow(), _request_id()
        await session.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id == row.id)
            .values(
                status="pending",
                attempts=0,
                next_attempt_at=now,
                delivered_at=None,
                request_id=request_id,
            )
        )
        if row.endpoint_id is not None:
            owner = await endpoint(session, user_id, row.endpoint_id, lock=True)
            if not owner.enabled:
                raise Conflict(f"Webhook 端点 {owner.id} 已停用,请先启用")
            take_manual_turn(ctx.settings, owner)
        else:
            signer = await session.scalar(
                select(CallbackSecret).where(CallbackSecret.user_id == user_id).with_for_update()
            )
            if signer is None:
                raise Conflict("回调签名密钥已删除,无法重新投递")
            take_manual_turn(ctx.settings, signer)
        row.status, row.attempts, row.next_attempt_at = "pending", 0, now
        row.request_id = request_id
    return row


async def new_callback_secret(ctx: AppContext, user_id: int) -> str:
    secret = new_secret()
    async with ctx.db.write() as session:
        row = await session.get(CallbackSecret, user_id)
        if row is None:
            session.add(CallbackSecret(user_id=user_id, sealed_secret=ctx.key_box.seal(secret)))
        else:
            row.sealed_secret, row.created_at = ctx.key_box.seal(secret), utcnow()
    return secret


async def check_callback(ctx: AppContext, user_id: int, url: str) -> str:
    """A submit's callbackUrl: a URL we may send to, and a secret to sign with."""
    url = await check_url(ctx, url)
    async with ctx.db.read() as session:
        has_secret = await session.scalar(
            select(CallbackSecret.user_id).where(CallbackSecret.user_id == user_id)
        )
    if has_secret is None:
        raise BadRequest(
            "参数错误:使用 callbackUrl 前请先创建回调签名密钥(POST /user/webhooks/callback-secret)"
        )
    return url


# The reads of the user's webhook routes, each in a transaction of its own.


async def endpoints_of(db: Database, user_id: int) -> list[WebhookEndpoint]:
    """:func:`endpoints`, in a read of its own."""
    async with db.read() as session:
        return await endpoints(session, user_id)


async def messages_of(
    db: Database,
    user_id: int,
    *,
    endpoint_id: int | None,
    status: str | None,
    task_no: str | None,
    page: int,
    size: int,
) -> tuple[list[WebhookMessage], int]:
    """:func:`messages`, in a read of its own."""
    async with db.read() as session:
        return await messages(
            session,
            user_id,
            endpoint_id=endpoint_id,
            status=status,
            task_no=task_no,
            page=page,
            size=size,
        )


async def message_of(
    db: Database, user_id: int, msg_id: str
) -> tuple[WebhookMessage, list[WebhookAttempt]]:
    """:func:`message`, in a read of its own."""
    async with db.read() as session:
        return await message(session, user_id, msg_id)
