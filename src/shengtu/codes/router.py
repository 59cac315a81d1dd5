from __future__ import annotations

from fastapi import APIRouter, Request

from shengtu.api.deps import ContextDep, PrincipalDep
from shengtu.api.envelope import Envelope, ok
from shengtu.codes import service
from shengtu.codes.schemas import RedeemOut, RedeemRequest

router = APIRouter(tags=["points"])


@router.post("/user/points/redeem", response_model=Envelope[RedeemOut])
async def redeem(
    body: RedeemRequest, request: Request, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[RedeemOut]:
    """Spend a redemption code (兑换码) for its points; each code works once."""
    attempt = await ctx.limits.redeem_attempt(principal.user_id, ctx.clients.of(request.scope))
    async with ctx.db.write() as session:
        spent, balance = await service.redeem(session, body.code, principal.user_id)
    await ctx.limits.redeem_succeeded(attempt)
    return ok(RedeemOut(points=spent.points, balance=balance))
