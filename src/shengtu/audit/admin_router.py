"""``/admin/audit``: who did what, when, before → after (admins only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from shengtu.api.envelope import Envelope, Page, PageNo, PageSize, ok
from shengtu.audit import service
from shengtu.auth.deps import AdminDep
from shengtu.context import ContextDep
from shengtu.timefmt import fmt

router = APIRouter(tags=["admin: audit"])


class AuditOut(BaseModel):
    id: int
    actorId: int | None
    actor: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    createTime: str


@router.get("/admin/audit", response_model=Envelope[Page[AuditOut]])
async def audit_log(
    ctx: ContextDep,
    _: AdminDep,
    page: PageNo = 1,
    size: PageSize = 20,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    target: Annotated[str | None, Query(max_length=128)] = None,
) -> Envelope[Page[AuditOut]]:
    tz = ctx.settings.timezone
    rows, total = await service.find(
        ctx.db, page=page, size=size, action=action, actor=actor, target=target
    )
    out = [
        AuditOut(
            id=r.id,
            actorId=r.actor_id,
            actor=r.actor_name,
            action=r.action,
            target=r.target,
            before=r.before,
            after=r.after,
            createTime=fmt(r.created_at, tz) or "",
        )
        for r in rows
    ]
    return ok(Page[AuditOut].of(out, total, page, size))
