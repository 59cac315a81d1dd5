from __future__ import annotations

from fastapi import APIRouter

from shengtu.api.envelope import Envelope, ok
from shengtu.auth.deps import PrincipalDep
from shengtu.catalog.schemas import ModelOut
from shengtu.catalog.service import public_view
from shengtu.context import ContextDep

router = APIRouter(tags=["catalog"])


@router.get("/user/ai/models", response_model=Envelope[list[ModelOut]])
async def list_models(ctx: ContextDep, _: PrincipalDep) -> Envelope[list[ModelOut]]:
    """The enabled models; a model with choices shows the values it offers
    (``parameters``) and how its price follows them (``priceRule``)."""
    return ok([public_view(m) for m in await ctx.catalog.enabled()])
