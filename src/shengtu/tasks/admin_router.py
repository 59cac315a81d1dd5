"""``/admin/tasks``: every user's tasks, to find the one a user complains about (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from shengtu.api.envelope import Envelope, Page, PageNo, PageSize, ok
from shengtu.auth.deps import AdminDep
from shengtu.channels.schemas import AttemptOut
from shengtu.context import ContextDep
from shengtu.exchanges.schemas import ExchangeOut
from shengtu.models.tasks import AiTask
from shengtu.points.schemas import LedgerOut, ledger_out
from shengtu.tasks import admin_service as service
from shengtu.tasks.schemas import TaskDetail, TaskStatus, task_detail
from shengtu.timefmt import to_utc

router = APIRouter(tags=["admin: tasks"])


class AdminTaskOut(TaskDetail):
    userId: int
    username: str | None
    apiKeyId: int | None
    channelId: int | None
    upstreamId: str | None
    upstreamStatus: str | None
    lastError: str | None
    attempts: int
    # What the price was worked out from, what the upstream cost the operator (a decimal
    # string; None: not recorded) and the upstream's own usage figures.
    pricing: dict[str, Any] | None = None
    cost: str | None = None
    upstreamUsage: dict[str, Any] | None = None


class AdminTaskDetail(BaseModel):
    task: AdminTaskOut
    attempts: list[AttemptOut]
    ledger: list[LedgerOut]
    # Every request sent upstream about it and the answer, oldest first (keys and
    # signatures masked, bodies capped): all of them, or of many the first and the last
    # (``exchangeCount`` says how many are kept; the others a page at a time below).
    exchanges: list[ExchangeOut]
    exchangeCount: int


def admin_task_out(task: AiTask, username: str | None, tz: str) -> AdminTaskOut:
    return AdminTaskOut(
        **task_detail(task, tz).model_dump(),
        userId=task.user_id,
        username=username,
        apiKeyId=task.api_key_id,
        channelId=task.channel_id,
        upstreamId=task.upstream_id,
        upstreamStatus=task.upstream_status,
        lastError=task.last_error,
        attempts=task.attempts,
        pricing=task.pricing,
        cost=None if task.cost is None else str(task.cost),
        upstreamUsage=task.upstream_usage,
    )


@router.get("/admin/tasks", response_model=Envelope[Page[AdminTaskOut]])
async def list_tasks(
    ctx: ContextDep,
    _: AdminDep,
    page: PageNo = 1,
    size: PageSize = 20,
    status: TaskStatus | None = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    channelId: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    userId: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    username: Annotated[str | None, Query(max_length=64)] = None,
    taskNo: Annotated[str | None, Query(max_length=40)] = None,
    upstreamId: Annotated[str | None, Query(max_length=128)] = None,
    createdFrom: datetime | None = None,
    createdTo: datetime | None = None,
) -> Envelope[Page[AdminTaskOut]]:
    """Filter by status, model, channel (0: the settings' upstream), user, time, task
    number or upstream job id; newest first."""
    tz = ctx.settings.timezone
    rows, total = await service.find_in(
        ctx.db,
        page=page,
        size=size,
        filters=service.TaskFilter(
            status=status,
            model=model,
            channel_id=channelId,
            user_id=userId,
            username=username,
            task_no=taskNo,
            upstream_id=upstreamId,
            created_from=to_utc(createdFrom, tz) if createdFrom else None,
            created_to=to_utc(createdTo, tz) if createdTo else None,
        ),
    )
    out = [admin_task_out(t, name, tz) for t, name in rows]
    return ok(Page[AdminTaskOut].of(out, total, page, size))


@router.get("/admin/tasks/{task_no}", response_model=Envelope[AdminTaskDetail])
async def get_task(task_no: str, ctx: ContextDep, _: AdminDep) -> Envelope[AdminTaskDetail]:
    """The task with every try at handing it upstream, its ledger rows and its kept
    upstream exchanges."""
    tz = ctx.settings.timezone
    found = await service.view(ctx.db, task_no, tz)
    return ok(
        AdminTaskDetail(
            task=admin_task_out(found.task, found.username, tz),
            attempts=found.attempts,
            ledger=[ledger_out(r, tz) for r in found.ledger],
            exchanges=found.exchanges,
            exchangeCount=found.exchange_count,
        )
    )


@router.get("/admin/tasks/{task_no}/exchanges", response_model=Envelope[Page[ExchangeOut]])
async def task_exchanges(
    task_no: str, ctx: ContextDep, _: AdminDep, page: PageNo = 1, size: PageSize = 20
) -> Envelope[Page[ExchangeOut]]:
    """The task's kept upstream exchanges, a page at a time, oldest first."""
    rows, total = await service.exchanges_of(
        ctx.db, task_no, ctx.settings.timezone, page=page, size=size
    )
    return ok(Page[ExchangeOut].of(rows, total, page, size))


@router.post("/admin/tasks/{task_no}/cancel", response_model=Envelope[AdminTaskOut])
async def cancel_task(task_no: str, ctx: ContextDep, admin: AdminDep) -> Envelope[AdminTaskOut]:
    """End a running task as failed, its points back to the user. Once an upstream has
    accepted it the operator still pays the upstream for it."""
    tz = ctx.settings.timezone
    task, username = await service.cancel(ctx, admin, task_no)
    return ok(admin_task_out(task, username, tz))
