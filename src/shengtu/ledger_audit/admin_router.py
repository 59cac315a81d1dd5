"""``/admin/ledger/audit``: the ledger's invariants, checked for the operator."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from pydantic import BaseModel

from shengtu.api.envelope import Envelope, ok
from shengtu.auth.deps import AdminDep
from shengtu.context import ContextDep
from shengtu.ledger_audit import service

router = APIRouter(tags=["points"])


class AuditCheckOut(BaseModel):
    name: str
    checked: int
    ok: bool
    violations: list[str]
    violationCount: int


@router.get("/admin/ledger/audit", response_model=Envelope[list[AuditCheckOut]])
async def ledger_audit(ctx: ContextDep, _: AdminDep) -> Envelope[list[AuditCheckOut]]:
    """Every ledger invariant checked against one snapshot of the database (what
    ``shengtu audit`` prints); a task is stuck two minutes past its deadline."""
    checks = await service.audit_snapshot(ctx.db, timedelta(seconds=120))
    return ok(
        [
            AuditCheckOut(
                name=c.name,
                checked=c.checked,
                ok=c.ok,
                violations=c.violations[:20],
                violationCount=len(c.violations),
            )
            for c in checks
        ]
    )
