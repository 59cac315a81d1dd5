from __future__ import annotations

from fastapi import APIRouter, Request

from shengtu.api.envelope import Envelope, ok
from shengtu.auth.deps import PrincipalDep
from shengtu.codes import service
from shengtu.codes.schemas import RedeemOut, RedeemRequest
from shengtu.context import ContextDep
from shengtu.errors import BadRequest

router = APIRouter(tags=["points"])


@router.post("/user/points/redeem", response_model=Envelope[RedeemOut])
async def redeem(
    body: RedeemRequest, request: Request, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[RedeemOut]:
    """Spend a redemption code (兑换码) for its points; each code works once."""
    new = await service.account_is_new(
        ctx.db, principal.user_id, ctx.settings.redeem_new_account_hours
    )
    attempt = await ctx.limits.redeem_attempt(
        principal.user_id, ctx.clients.of(request.scope), new_account=new
    )
    try:
        spent, balance = await service.redeem_for(ctx.db, body.code, principal.user_id)
    except BadRequest:
        # Past the failure budget a bad code says no more than that (not whether it
        # exists, is used, disabled or expired).
        if attempt.refusal is not None:
            raise attempt.refusal from None
        raise
    await ctx.limits.redeem_succeeded(attempt)
    return ok(RedeemOut(points=spent.points, balance=balance))
