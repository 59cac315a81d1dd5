"""``/user/webhooks``: endpoints (secret shown once), their messages and attempts, a test
message, redelivery; and the secret that signs per-task callbacks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from shengtu.api.envelope import Envelope, Page, PageNo, PageSize, ok
from shengtu.api.inputs import RequestBody, RowId
from shengtu.auth.deps import PrincipalDep
from shengtu.auth.principal import require_login_token
from shengtu.context import ContextDep
from shengtu.models.webhooks import WebhookAttempt, WebhookEndpoint, WebhookMessage
from shengtu.timefmt import fmt
from shengtu.webhooks import service

router = APIRouter(tags=["webhooks"])
MessageId = Annotated[str, Path(min_length=1, max_length=40)]


class EndpointCreate(RequestBody):
    url: str = Field(min_length=1, max_length=2048)
    description: str | None = Field(default=None, max_length=255)


class EndpointOut(BaseModel):
    id: int
    url: str
    description: str | None
    enabled: bool
    # Why it was disabled (it kept failing), when it was.
    disabledReason: str | None
    createTime: str


class EndpointCreated(EndpointOut):
    # Shown this once: sign-checking needs it, and it is never shown again.
    secret: str


class MessageOut(BaseModel):
    id: str
    endpointId: int | None
    url: str
    event: str
    taskNo: str | None
    status: str
    attempts: int
    lastStatus: int | None
    nextAttemptTime: str | None
    deliveredTime: str | None
    createTime: str


class AttemptOut(BaseModel):
    time: str
    statusCode: int | None
    latencyMs: int
    response: str | None
    error: str | None


class MessageDetail(MessageOut):
    body: str | None
    attemptLog: list[AttemptOut]


class SecretOut(BaseModel):
    secret: str


def _endpoint(row: WebhookEndpoint, tz: str) -> EndpointOut:
    return EndpointOut(
        id=row.id,
        url=row.url,
        description=row.description,
        enabled=row.enabled,
        disabledReason=row.disabled_reason,
        createTime=fmt(row.created_at, tz) or "",
    )


def _message(row: WebhookMessage, tz: str) -> MessageOut:
    return MessageOut(
        id=row.msg_id,
        endpointId=row.endpoint_id,
        url=row.url,
        event=row.event,
        taskNo=row.task_no,
        status=row.status,
        attempts=row.attempts,
        lastStatus=row.last_status,
        nextAttemptTime=fmt(row.next_attempt_at, tz) if row.status == "pending" else None,
        deliveredTime=fmt(row.delivered_at, tz),
        createTime=fmt(row.created_at, tz) or "",
    )


def _attempt(row: WebhookAttempt, tz: str) -> AttemptOut:
    return AttemptOut(
        time=fmt(row.attempted_at, tz) or "",
        statusCode=row.status_code,
        latencyMs=row.latency_ms,
        response=row.response,
        error=row.error,
    )


@router.post("/user/webhooks", response_model=Envelope[EndpointCreated])
async def create_endpoint(
    body: EndpointCreate, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[EndpointCreated]:
    """An endpoint for task.completed, task.failed and task.late_result, in the Standard
    Webhooks format; its signing secret is in this answer only."""
    require_login_token(principal, "创建 Webhook")
    row, secret = await service.create_endpoint(ctx, principal.user_id, body.url, body.description)
    out = _endpoint(row, ctx.settings.timezone)
    return ok(EndpointCreated(**out.model_dump(), secret=secret))


@router.get("/user/webhooks", response_model=Envelope[list[EndpointOut]])
async def list_endpoints(ctx: ContextDep, principal: PrincipalDep) -> Envelope[list[EndpointOut]]:
    rows = await service.endpoints_of(ctx.db, principal.user_id)
    return ok([_endpoint(r, ctx.settings.timezone) for r in rows])


@router.delete("/user/webhooks/{webhook_id}", response_model=Envelope[None])
async def delete_endpoint(
    webhook_id: RowId, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[None]:
    require_login_token(principal, "删除 Webhook")
    await service.delete_endpoint(ctx, principal.user_id, webhook_id)
    return ok(None)


@router.post("/user/webhooks/{webhook_id}/enable", response_model=Envelope[EndpointOut])
async def enable_endpoint(
    webhook_id: RowId, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[EndpointOut]:
    require_login_token(principal, "启用 Webhook")
    row = await service.enable_endpoint(ctx, principal.user_id, webhook_id)
    return ok(_endpoint(row, ctx.settings.timezone))


@router.post("/user/webhooks/{webhook_id}/test", response_model=Envelope[MessageOut])
async def send_test(
    webhook_id: RowId, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[MessageOut]:
    """A ``webhook.test`` message to the endpoint, delivered like any other. Tests and
    redeliveries to one endpoint are limited (SHENGTU_WEBHOOK_MANUAL_PER_MINUTE): 429
    with Retry-After beyond."""
    row = await service.send_test(ctx, principal.user_id, webhook_id)
    return ok(_message(row, ctx.settings.timezone))


@router.get("/user/webhooks/messages", response_model=Envelope[Page[MessageOut]])
async def list_messages(
    ctx: ContextDep,
    principal: PrincipalDep,
    page: PageNo = 1,
    size: PageSize = 20,
    webhookId: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    taskNo: Annotated[str | None, Query(max_length=64)] = None,
) -> Envelope[Page[MessageOut]]:
    rows, total = await service.messages_of(
        ctx.db,
        principal.user_id,
        endpoint_id=webhookId,
        status=status,
        task_no=taskNo,
        page=page,
        size=size,
    )
    tz = ctx.settings.timezone
    return ok(Page[MessageOut].of([_message(r, tz) for r in rows], total, page, size))


@router.get("/user/webhooks/messages/{message_id}", response_model=Envelope[MessageDetail])
async def get_message(
    message_id: MessageId, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[MessageDetail]:
    """A message, the exact body it sends, and every attempt (status, latency, answer)."""
    row, attempts = await service.message_of(ctx.db, principal.user_id, message_id)
    tz = ctx.settings.timezone
    return ok(
        MessageDetail(
            **_message(row, tz).model_dump(),
            body=row.body,
            attemptLog=[_attempt(a, tz) for a in attempts],
        )
    )


@router.post("/user/webhooks/messages/{message_id}/redeliver", response_model=Envelope[MessageOut])
async def redeliver(
    message_id: MessageId, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[MessageOut]:
    """Send again now, with the same ``webhook-id``; its retries start over. Counted with
    the endpoint's tests (429 with Retry-After beyond its limit)."""
    row = await service.redeliver(ctx, principal.user_id, message_id)
    return ok(_message(row, ctx.settings.timezone))


@router.post("/user/webhooks/callback-secret", response_model=Envelope[SecretOut])
async def new_callback_secret(ctx: ContextDep, principal: PrincipalDep) -> Envelope[SecretOut]:
    """A new secret for the callbacks of tasks submitted with ``callbackUrl`` (the old one
    stops signing at once). Shown this once."""
    require_login_token(principal, "创建回调签名密钥")
    return ok(SecretOut(secret=await service.new_callback_secret(ctx, principal.user_id)))
