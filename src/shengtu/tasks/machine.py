"""The task state machine: statuses, the one table of allowed moves, and the guarded write.

A move is one UPDATE guarded by the task's current status (and the mover's lease), so
however many workers race, exactly one wins. A move to ``failed`` refunds in the same
transaction; the ledger's unique (task_no, kind) makes a second refund impossible.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.db import utcnow
from shengtu.points import service as points
from shengtu.tasks.models import AiTask


class Status(StrEnum):
    CREATED = "created"  # charged, not yet accepted upstream
    QUEUED = "queued"  # accepted upstream, waiting
    PROCESSING = "processing"  # generating
    COMPLETED = "completed"  # picture stored
    FAILED = "failed"  # errorMessage set, points back


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED})
ACTIVE = (Status.CREATED, Status.QUEUED, Status.PROCESSING)

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.CREATED: frozenset({Status.CREATED, Status.QUEUED, Status.PROCESSING, Status.FAILED}),
    Status.QUEUED: frozenset({Status.QUEUED, Status.PROCESSING, Status.COMPLETED, Status.FAILED}),
    Status.PROCESSING: frozenset({Status.PROCESSING, Status.COMPLETED, Status.FAILED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
}


class IllegalTransition(Exception):
    pass


def check_move(current: str, target: str) -> None:
    if Status(target) not in TRANSITIONS[Status(current)]:
        raise IllegalTransition(f"{current} → {target}")


async def move(
    session: AsyncSession,
    task: AiTask,
    target: Status,
    *,
    lease_owner: str | None,
    **values: Any,
) -> AiTask | None:
    """Move ``task`` (as last read) to ``target``; None when someone else moved it first.

    With ``lease_owner`` the move also requires that the mover still holds the lease,
    and releases it. A move to ``failed`` refunds the task's points in this transaction.
    """
    check_move(task.status, target)
    now = utcnow()
    stmt = (
        update(AiTask)
        .where(AiTask.id == task.id, AiTask.status == task.status)
        .values(status=target.value, updated_at=now, lease_owner=None, lease_until=None, **values)
    )
    if lease_owner is not None:
        stmt = stmt.where(AiTask.lease_owner == lease_owner)
    if target is Status.COMPLETED:
        stmt = stmt.values(progress=100, completed_at=now)
    elif target is Status.FAILED:
        stmt = stmt.values(completed_at=now)
    result = await session.execute(stmt)
    if getattr(result, "rowcount", 0) != 1:
        return None
    if target is Status.FAILED:
        await points.refund(session, task.user_id, task.points_cost, task.task_no)
    moved = await session.scalar(
        select(AiTask).where(AiTask.id == task.id).execution_options(populate_existing=True)
    )
    assert moved is not None
    return moved
