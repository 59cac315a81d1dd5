from __future__ import annotations

from fastapi import APIRouter

from shengtu.api.envelope import Envelope, ok
from shengtu.auth.deps import PrincipalDep
from shengtu.catalog.schemas import ModelOut
from shengtu.context import ContextDep

router = APIRouter(tags=["catalog"])


@router.get("/user/ai/models", response_model=Envelope[list[ModelOut]])
async def list_models(ctx: ContextDep, _: PrincipalDep) -> Envelope[list[ModelOut]]:
    models = await ctx.catalog.enabled()
    return ok(
        [
            ModelOut(
                modelName=m.model_name,
                description=m.description,
                pointsCost=m.points_cost,
                taskType=m.task_type,
                aspectRatio=m.aspect_ratio,
            )
            for m in models
        ]
    )
