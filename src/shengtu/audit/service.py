"""The audit log: every admin action, written in the transaction that makes the change,
so that a change is never without its entry nor an entry without its change."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.auth.principal import Principal
from shengtu.db import Database
from shengtu.models.audit import AuditEntry

# The actor name of what the platform did by itself.
SYSTEM = "系统"


async def record(
    session: AsyncSession,
    actor: Principal | None,
    action: str,
    target: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """``actor`` None: the platform itself (a periodic job), not a person."""
    session.add(
        AuditEntry(
            actor_id=actor.user_id if actor else None,
            actor_name=actor.username if actor else SYSTEM,
            action=action,
            target=target[:128],
            before=before,
            after=after,
        )
    )
    await session.flush()


async def entries(
    session: AsyncSession,
    *,
    page: int,
    size: int,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
) -> tuple[list[AuditEntry], int]:
    where = []
    if action:
        where.append(AuditEntry.action == action)
    if actor:
        where.append(AuditEntry.actor_name == actor)
    if target:
        where.append(AuditEntry.target == target)
    if since is not None:
        where.append(AuditEntry.created_at >= since)
    total = await session.scalar(select(func.count()).select_from(AuditEntry).where(*where))
    rows = await session.scalars(
        select(AuditEntry)
        .where(*where)
        .order_by(AuditEntry.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    return list(rows), int(total or 0)


def snapshot(row: Any, columns: Iterable[str]) -> dict[str, Any]:
    """The named columns of ``row``, as JSON can hold them (never a secret: the caller
    names only columns that are not)."""
    out: dict[str, Any] = {}
    for name in columns:
        value = getattr(row, name)
        out[name] = str(value) if isinstance(value, Decimal | datetime) else value
    return out


async def find(
    db: Database,
    *,
    page: int,
    size: int,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
) -> tuple[list[AuditEntry], int]:
    """:func:`entries`, in a read of its own (``/admin/audit``)."""
    async with db.read() as session:
        return await entries(
            session, page=page, size=size, action=action, actor=actor, target=target
        )
