"""The model catalog, read through a short cache: it changes rarely and is read on every submit."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.api.inputs import given_columns
from shengtu.catalog.schemas import ModelAdminOut, ModelChange, ModelCreate
from shengtu.db import Database
from shengtu.errors import Conflict, NotFound
from shengtu.models.catalog import PointsConfig
from shengtu.pricing.parameters import NONE, Parameters
from shengtu.pricing.rules import FLAT, PriceRule

CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class CatalogModel:
    model_name: str
    description: str
    points_cost: int
    task_type: str
    aspect_ratio: str | None
    provider: str
    upstream_model: str
    upstream_params: dict[str, Any] = field(default_factory=dict)
    parameters: Parameters = NONE
    price_rule: PriceRule = FLAT

    @property
    def takes_images(self) -> bool:
        """Whether a task of it may carry reference images."""
        return self.task_type != "text_to_image"

    @property
    def needs_images(self) -> bool:
        return self.task_type == "image_to_image"

    def serves(self, task_type: str) -> bool:
        return self.task_type in (task_type, "both")


class Catalog:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._models: dict[str, CatalogModel] = {}
        self._loaded_at = 0.0

    async def _refresh(self) -> None:
        if time.monotonic() - self._loaded_at < CACHE_SECONDS:
            return
        async with self._db.read() as session:
            rows = await session.scalars(
                select(PointsConfig)
                .where(PointsConfig.enabled.is_(True))
                .order_by(PointsConfig.sort_order, PointsConfig.id)
            )
            self._models = {
                r.model_name: CatalogModel(
                    r.model_name,
                    r.description,
                    r.points_cost,
                    r.task_type,
                    r.aspect_ratio,
                    r.provider,
                    r.upstream_model,
                    dict(r.upstream_params or {}),
                    Parameters.parse(r.params),
                    PriceRule.parse(r.price_rule),
                )
                for r in rows
            }
        self._loaded_at = time.monotonic()

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    async def enabled(self) -> list[CatalogModel]:
        await self._refresh()
        return list(self._models.values())

    async def get(self, model_name: str) -> CatalogModel | None:
        await self._refresh()
        return self._models.get(model_name)


def admin_view(row: PointsConfig) -> ModelAdminOut:
    return ModelAdminOut(
        modelName=row.model_name,
        description=row.description,
        pointsCost=row.points_cost,
        taskType=row.task_type,
        aspectRatio=row.aspect_ratio,
        provider=row.provider,
        upstreamModel=row.upstream_model,
        upstreamParams=dict(row.upstream_params or {}),
        enabled=row.enabled,
        sortOrder=row.sort_order,
    )


async def all_models(session: AsyncSession) -> list[PointsConfig]:
    return list(
        await session.scalars(
            select(PointsConfig).order_by(PointsConfig.sort_order, PointsConfig.id)
        )
    )


async def get_model(session: AsyncSession, model_name: str) -> PointsConfig:
    row = await session.scalar(select(PointsConfig).where(PointsConfig.model_name == model_name))
    if row is None:
        raise NotFound(f"模型 {model_name[:64]} 不存在")
    return row


_COLUMNS = {
    "description": "description",
    "pointsCost": "points_cost",
    "taskType": "task_type",
    "aspectRatio": "aspect_ratio",
    "upstreamModel": "upstream_model",
    "upstreamParams": "upstream_params",
    "enabled": "enabled",
    "sortOrder": "sort_order",
}


async def create_model(session: AsyncSession, body: ModelCreate) -> PointsConfig:
    values = given_columns(body, _COLUMNS)
    # Served by the channels that name it, or else by the upstream of the settings.
    row = PointsConfig(model_name=body.modelName, provider="suchuang", **values)
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"模型 {body.modelName} 已存在") from exc
    return row


async def change_model(session: AsyncSession, model_name: str, body: ModelChange) -> PointsConfig:
    row = await get_model(session, model_name)
    for column, value in given_columns(body, _COLUMNS).items():
        setattr(row, column, value)
    await session.flush()
    return row
