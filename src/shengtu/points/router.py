from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from shengtu.accounts.service import get_user_by_name
from shengtu.api.deps import AdminDep, ContextDep, PrincipalDep
from shengtu.api.envelope import Envelope, Page, ok
from shengtu.points import service
from shengtu.points.schemas import BalanceOut, GrantRequest, LedgerOut, balance_out
from shengtu.timefmt import fmt

router = APIRouter(tags=["points"])

PageNo = Annotated[int, Query(ge=1, le=1_000_000)]
PageSize = Annotated[int, Query(ge=1, le=100)]


@router.get("/user/points/consumption/balance", response_model=Envelope[BalanceOut])
async def balance(ctx: ContextDep, principal: PrincipalDep) -> Envelope[BalanceOut]:
    async with ctx.db.read() as session:
        account = await service.balance(session, principal.user_id)
    tz = ctx.settings.timezone
    return ok(balance_out(account.user_id, account.balance, account.expire_time, tz))


@router.get("/user/points/consumption/records", response_model=Envelope[Page[LedgerOut]])
async def records(
    ctx: ContextDep, principal: PrincipalDep, page: PageNo = 1, size: PageSize = 10
) -> Envelope[Page[LedgerOut]]:
    async with ctx.db.read() as session:
        rows, total = await service.records(session, principal.user_id, page, size)
    tz = ctx.settings.timezone
    out = [
        LedgerOut(
            id=r.id,
            delta=r.delta,
            balanceAfter=r.balance_after,
            kind=r.kind,
            taskNo=r.task_no,
            note=r.note,
            createTime=fmt(r.created_at, tz) or "",
        )
        for r in rows
    ]
    return ok(Page[LedgerOut].of(out, total, page, size))


@router.post("/admin/points/grant", response_model=Envelope[BalanceOut])
async def admin_grant(body: GrantRequest, ctx: ContextDep, _: AdminDep) -> Envelope[BalanceOut]:
    """Grant (positive) or take back (negative, never below zero) a user's points."""
    async with ctx.db.write() as session:
        user = await get_user_by_name(session, body.username)
        if body.amount > 0:
            after = await service.grant(session, user.id, body.amount, body.note or "管理员发放")
        else:
            after = await service.adjust(session, user.id, body.amount, body.note or "管理员调整")
    return ok(BalanceOut(userId=user.id, balance=after, expireTime=None))
