"""Tasks across users, for the operator: find, inspect, cancel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.audit import service as audit
from shengtu.auth.principal import Principal
from shengtu.channels import service as channels
from shengtu.channels.schemas import AttemptOut
from shengtu.context import AppContext
from shengtu.db import Database
from shengtu.errors import Conflict
from shengtu.exchanges import service as exchanges
from shengtu.exchanges.schemas import ExchangeOut
from shengtu.models.accounts import User
from shengtu.models.points import PointsLedger
from shengtu.models.tasks import TERMINAL, AiTask, Status
from shengtu.tasks.machine import move
from shengtu.tasks.schemas import task_detail, task_version
from shengtu.tasks.service import task_not_found


@dataclass(frozen=True)
class TaskFilter:
    status: str | None = None
    model: str | None = None
    channel_id: int | None = None
    user_id: int | None = None
    username: str | None = None
    task_no: str | None = None
    upstream_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    def where(self) -> list[Any]:
        where: list[Any] = []
        if self.status:
            where.append(AiTask.status == self.status)
        if self.model:
            where.append(AiTask.model_name == self.model)
        if self.channel_id is not None:
            where.append(
                AiTask.channel_id.is_(None)
                if self.channel_id == 0
                else AiTask.channel_id == self.channel_id
            )
        if self.user_id is not None:
            where.append(AiTask.user_id == self.user_id)
        if self.username:
            where.append(User.username == self.username.strip())
        if self.task_no:
            where.append(AiTask.task_no == self.task_no.strip())
        if self.upstream_id:
            where.append(AiTask.upstream_id == self.upstream_id.strip())
        if self.created_from is not None:
            where.append(AiTask.created_at >= self.created_from)
        if self.created_to is not None:
            where.append(AiTask.created_at < self.created_to)
        return where


async def find(
    session: AsyncSession, *, page: int, size: int, filters: TaskFilter
) -> tuple[list[tuple[AiTask, str | None]], int]:
    where = filters.where()
    counted = select(func.count()).select_from(AiTask)
    if filters.username:
        counted = counted.join(User, User.id == AiTask.user_id)
    total = await session.scalar(counted.where(*where))
    rows = await session.execute(
        select(AiTask, User.username)
        .join(User, User.id == AiTask.user_id)
        .where(*where)
        .order_by(AiTask.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    return list(rows.tuples()), int(total or 0)


async def get_task(session: AsyncSession, task_no: str) -> tuple[AiTask, str | None]:
    row = (
        await session.execute(
            select(AiTask, User.username)
            .join(User, User.id == AiTask.user_id)
            .where(AiTask.task_no == task_no)
        )
    ).first()
    if row is None:
        raise task_not_found(task_no)
    return row[0], row[1]


async def ledger_of(session: AsyncSession, task_no: str) -> list[PointsLedger]:
    return list(
        await session.scalars(
            select(PointsLedger).where(PointsLedger.task_no == task_no).order_by(PointsLedger.id)
        )
    )


async def cancel(ctx: AppContext, actor: Principal, task_no: str) -> tuple[AiTask, str | None]:
    """Fail a running task by the state machine's move (points back), unless a worker is
    talking to the upstream about it this moment (409: try again)."""
    async with ctx.db.write() as session:
        task, username = await get_task(session, task_no)
        if task.status in TERMINAL:
            raise Conflict(f"任务 {task_no} 已结束({task.status}),无法取消")
        before = {"status": task.status}
        moved = await move(
            session,
            task,
            Status.FAILED,
            lease_owner=None,
            unleased=True,
            error_message="管理员已取消任务",
            late_until=None,
            late_next_at=None,
        )
        if moved is None:
            raise Conflict(f"任务 {task_no} 正在与上游通信,请稍后再试")
        await audit.record(
            session, actor, "task.cancel", f"task:{task_no}", before, {"status": "failed"}
        )
    detail = task_detail(moved, ctx.settings.timezone)
    await ctx.bus.publish(
        moved.user_id, {"event": "task.updated", "data": detail.model_dump()}, task_version(moved)
    )
    return moved, username


async def find_in(
    db: Database, *, page: int, size: int, filters: TaskFilter
) -> tuple[list[tuple[AiTask, str | None]], int]:
    """:func:`find`, in a read of its own."""
    async with db.read() as session:
        return await find(session, page=page, size=size, filters=filters)


@dataclass(frozen=True)
class TaskView:
    task: AiTask
    username: str | None
    attempts: list[AttemptOut]
    ledger: list[PointsLedger]
    # Its kept upstream exchanges (the first and last of many), and how many are kept.
    exchanges: list[ExchangeOut]
    exchange_count: int


async def view(db: Database, task_no: str, tz: str) -> TaskView:
    """The task, its owner's name, every try at handing it upstream, its ledger rows and
    its kept upstream exchanges, read together."""
    async with db.read() as session:
        task, username = await get_task(session, task_no)
        attempts = await channels.attempts_of(session, task_no, tz)
        ledger = await ledger_of(session, task_no)
        kept, count = await exchanges.of_task(session, task.id, tz)
    return TaskView(task, username, attempts, ledger, kept, count)


async def exchanges_of(
    db: Database, task_no: str, tz: str, *, page: int, size: int
) -> tuple[list[ExchangeOut], int]:
    """A page of the task's kept upstream exchanges, oldest first, and how many it has."""
    async with db.read() as session:
        task, _ = await get_task(session, task_no)
        return await exchanges.page_of_task(session, task.id, tz, page=page, size=size)
