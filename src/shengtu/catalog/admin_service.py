"""The catalog for the operator: every model, made and changed with its audit entry."""

from __future__ import annotations

from shengtu.audit import service as audit
from shengtu.auth.principal import Principal
from shengtu.catalog import service
from shengtu.catalog.schemas import ModelAdminOut, ModelChange, ModelCreate
from shengtu.catalog.service import Catalog
from shengtu.db import Database

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
    "params",
    "price_rule",
)


async def models(db: Database) -> list[ModelAdminOut]:
    async with db.read() as session:
        return [service.admin_view(m) for m in await service.all_models(session)]


async def create_model(
    db: Database, catalog: Catalog, actor: Principal, body: ModelCreate
) -> ModelAdminOut:
    async with db.write() as session:
        row = await service.create_model(session, body)
        out = service.admin_view(row)
        after = audit.snapshot(row, AUDITED)
        await audit.record(session, actor, "model.create", f"model:{row.model_name}", None, after)
    # Committed: the next read of the cache, in this process, sees the new model.
    catalog.invalidate()
    return out


async def change_model(
    db: Database, catalog: Catalog, actor: Principal, model_name: str, body: ModelChange
) -> ModelAdminOut:
    async with db.write() as session:
        before = audit.snapshot(await service.get_model(session, model_name), AUDITED)
        row = await service.change_model(session, model_name, body)
        out = service.admin_view(row)
        after = audit.snapshot(row, AUDITED)
        await audit.record(session, actor, "model.change", f"model:{row.model_name}", before, after)
    catalog.invalidate()
    return out
