from __future__ import annotations

from fastapi import APIRouter

from shengtu.api.envelope import Envelope, Page, PageNo, PageSize, ok
from shengtu.auth.deps import PrincipalDep
from shengtu.context import ContextDep
from shengtu.points import service
from shengtu.points.schemas import (
    BalanceOut,
    LedgerOut,
    balance_out,
    ledger_out,
)

router = APIRouter(tags=["points"])


@router.get("/user/points/consumption/balance", response_model=Envelope[BalanceOut])
async def balance(ctx: ContextDep, principal: PrincipalDep) -> Envelope[BalanceOut]:
    account = await service.balance_of(ctx.db, principal.user_id)
    tz = ctx.settings.timezone
    return ok(balance_out(account.user_id, account.balance, account.expire_time, tz))


@router.get("/user/points/consumption/records", response_model=Envelope[Page[LedgerOut]])
async def records(
    ctx: ContextDep, principal: PrincipalDep, page: PageNo = 1, size: PageSize = 10
) -> Envelope[Page[LedgerOut]]:
    rows, total = await service.records_of(ctx.db, principal.user_id, page, size)
    tz = ctx.settings.timezone
    out = [ledger_out(r, tz) for r in rows]
    return ok(Page[LedgerOut].of(out, total, page, size))
