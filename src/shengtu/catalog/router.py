from __future__ import annotations

from fastapi import APIRouter

from shengtu.api.envelope import Envelope, ok
from shengtu.audit import service as audit
from shengtu.auth.deps import AdminDep, PrincipalDep
from shengtu.catalog import service
from shengtu.catalog.schemas import ModelAdminOut, ModelChange, ModelCreate, ModelOut
from shengtu.context import ContextDep

AUDITED = (
    "model_name",
    "description",
    "points_cost",
    "task_type",
    "aspect_ratio",
    "provider",
    "upstream_model",
    "enabled",
    "sort_order",
)

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


@router.get("/admin/models", response_model=Envelope[list[ModelAdminOut]], tags=["admin: models"])
async def admin_list_models(ctx: ContextDep, _: AdminDep) -> Envelope[list[ModelAdminOut]]:
    """Every catalog model, the disabled ones too, with what the upstream is asked for."""
    async with ctx.db.read() as session:
        return ok([service.admin_view(m) for m in await service.all_models(session)])


@router.post("/admin/models", response_model=Envelope[ModelAdminOut], tags=["admin: models"])
async def admin_create_model(
    body: ModelCreate, ctx: ContextDep, admin: AdminDep
) -> Envelope[ModelAdminOut]:
    async with ctx.db.write() as session:
        row = await service.create_model(session, body)
        out = service.admin_view(row)
        after = audit.snapshot(row, AUDITED)
        await audit.record(session, admin, "model.create", f"model:{row.model_name}", None, after)
    ctx.catalog.invalidate()
    return ok(out)


@router.put(
    "/admin/models/{model_name}", response_model=Envelope[ModelAdminOut], tags=["admin: models"]
)
async def admin_change_model(
    model_name: str, body: ModelChange, ctx: ContextDep, admin: AdminDep
) -> Envelope[ModelAdminOut]:
    """A new price applies to every submit after the change; a task keeps what it was
    charged, and a refund returns exactly that."""
    async with ctx.db.write() as session:
        before = audit.snapshot(await service.get_model(session, model_name), AUDITED)
        row = await service.change_model(session, model_name, body)
        out = service.admin_view(row)
        after = audit.snapshot(row, AUDITED)
        await audit.record(session, admin, "model.change", f"model:{row.model_name}", before, after)
    ctx.catalog.invalidate()
    return ok(out)
