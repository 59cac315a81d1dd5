"""The model catalog, read through a short cache: it changes rarely and is read on every submit."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from shengtu.catalog.models import PointsConfig
from shengtu.db import Database

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

    @property
    def takes_images(self) -> bool:
        return self.task_type == "image_to_image"


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
