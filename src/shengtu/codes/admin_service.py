"""Redemption codes for the operator: batches made and codes disabled, each in one
transaction with its audit entry."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

from shengtu.audit import service as audit
from shengtu.auth.principal import Principal
from shengtu.codes import service
from shengtu.db import Database
from shengtu.models.codes import RedeemCode
from shengtu.timefmt import fmt


async def create_batch(
    db: Database,
    actor: Principal,
    count: int,
    points: int,
    *,
    note: str | None,
    expires_at: datetime | None,
    tz: str,
) -> list[RedeemCode]:
    async with db.write() as session:
        codes = await service.create_batch(session, count, points, note=note, expires_at=expires_at)
        await audit.record(
            session,
            actor,
            "codes.create",
            f"batch:{codes[0].batch}",
            None,
            {"count": count, "points": points, "note": note, "expireTime": fmt(expires_at, tz)},
        )
    return codes


async def find(
    db: Database, *, batch: str | None, state: str | None, page: int, size: int
) -> tuple[list[RedeemCode], int]:
    async with db.read() as session:
        return await service.find(session, batch=batch, state=state, page=page, size=size)


async def export(
    db: Database, *, batch: str | None, state: str | None
) -> AsyncGenerator[list[service.ExportedCode], None]:
    """Every matching code, oldest first, a thousand at a time, read in one transaction as
    the caller consumes."""
    async with db.read() as session:
        async for codes in service.stream(session, batch=batch, state=state):
            yield codes


async def disable(db: Database, actor: Principal, ids: list[int] | None, batch: str | None) -> int:
    """Disable unused codes by id, or every unused code of a batch; how many were."""
    async with db.write() as session:
        count = await service.disable(session, ids, batch)
        target = f"batch:{batch}" if batch else f"codes:{len(ids or [])}"
        await audit.record(
            session, actor, "codes.disable", target, None, {"ids": ids, "disabled": count}
        )
    return count
