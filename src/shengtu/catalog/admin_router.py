"""``/admin/models``: the catalog's models, the disabled ones too (admins only)."""

from __future__ import annotations

from fastapi import APIRouter

from shengtu.api.envelope import Envelope, ok
from shengtu.auth.deps import AdminDep
from shengtu.catalog import admin_service as service
from shengtu.catalog.schemas import ModelAdminOut, ModelChange, ModelCreate
from shengtu.context import ContextDep

# The tags the routes had beside the user's catalog route: the same OpenAPI document.
router = APIRouter(tags=["catalog"])


@router.get("/admin/models", response_model=Envelope[list[ModelAdminOut]], tags=["admin: models"])
async def admin_list_models(ctx: ContextDep, _: AdminDep) -> Envelope[list[ModelAdminOut]]:
    """Every catalog model, the disabled ones too, with what the upstream is asked for."""
    return ok(await service.models(ctx.db))


@router.post("/admin/models", response_model=Envelope[ModelAdminOut], tags=["admin: models"])
async def admin_create_model(
    body: ModelCreate, ctx: ContextDep, admin: AdminDep
) -> Envelope[ModelAdminOut]:
    return ok(await service.create_model(ctx.db, ctx.catalog, admin, body))


@router.put(
    "/admin/models/{model_name}", response_model=Envelope[ModelAdminOut], tags=["admin: models"]
)
async def admin_change_model(
    model_name: str, body: ModelChange, ctx: ContextDep, admin: AdminDep
) -> Envelope[ModelAdminOut]:
    """A new price applies to every submit after the change; a task keeps what it was
    charged, and a refund returns exactly that."""
    return ok(await service.change_model(ctx.db, ctx.catalog, admin, model_name, body))
