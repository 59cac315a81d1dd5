"""The model catalog, read through a short cache: it changes rarely and is read on every submit."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.api.inputs import given_columns
from shengtu.catalog.schemas import ModelAdminOut, ModelChange, ModelCreate, ModelOut
from shengtu.db import Database
from shengtu.errors import BadRequest, Conflict, NotFound
from shengtu.models.catalog import PointsConfig
from shengtu.pricing.parameters import NONE, InvalidParameters, Parameters
from shengtu.pricing.rules import FLAT, PriceRule

CACHE_SECONDS = 5.0
# A definition's size as JSON, and how many combinations of values it may offer: the
# cheapest price of a model is found by trying every combination.
MAX_DEFINITION_CHARS = 16_000
MAX_COMBINATIONS = 4096


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
        parameters=dict(row.params or {}),
        priceRule=dict(row.price_rule or {}),
    )


def public_view(model: CatalogModel) -> ModelOut:
    return ModelOut(
        modelName=model.model_name,
        description=model.description,
        pointsCost=model.points_cost,
        taskType=model.task_type,
        aspectRatio=model.aspect_ratio,
        parameters=model.parameters.to_json(),
        priceRule=model.price_rule.to_json(),
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


def checked_definition(
    parameters: Mapping[str, Any] | None, price_rule: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model's parameters and price rule as they are stored, checked together: 400 (the
    fault in Chinese, ``data.field`` naming the part at fault) for a definition that
    cannot be sold."""
    _refuse_oversized("parameters", parameters)
    _refuse_oversized("priceRule", price_rule)
    field_name = "parameters"
    try:
        params = Parameters.parse(parameters)
        field_name = "priceRule"
        rule = PriceRule.parse(price_rule)
        rule.check_against({name: c.values for name, c in params.choices.items()})
    except InvalidParameters as exc:
        raise BadRequest(f"参数错误:{exc}", data={"field": field_name}) from exc
    combinations = math.prod(len(c.values) for c in params.choices.values())
    if combinations > MAX_COMBINATIONS:
        raise BadRequest(
            f"参数错误:可选值的组合过多({combinations} 种,至多 {MAX_COMBINATIONS} 种)",
            data={"field": "parameters"},
        )
    return params.to_json(), rule.to_json()


def _refuse_oversized(name: str, raw: Mapping[str, Any] | None) -> None:
    text = json.dumps(raw or {}, ensure_ascii=False)
    if len(text) > MAX_DEFINITION_CHARS:
        raise BadRequest(
            f"参数错误:参数 {name} 过长(最多 {MAX_DEFINITION_CHARS} 个字符)",
            data={"field": name},
        )
    # A NUL is no character of a name or a value (PostgreSQL's JSON would refuse it).
    if "\\u0000" in text:
        raise BadRequest(f"参数 {name} 含有非法字符(NUL)", data={"field": name})


async def create_model(session: AsyncSession, body: ModelCreate) -> PointsConfig:
    values = given_columns(body, _COLUMNS)
    values["params"], values["price_rule"] = checked_definition(body.parameters, body.priceRule)
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
    if body.parameters is not None or body.priceRule is not None:
        # Either one checked beside the other as it will be: a rule prices only values
        # the parameters offer, whichever of the two changes.
        row.params, row.price_rule = checked_definition(
            row.params if body.parameters is None else body.parameters,
            row.price_rule if body.priceRule is None else body.priceRule,
        )
    for column, value in given_columns(body, _COLUMNS).items():
        setattr(row, column, value)
    await session.flush()
    return row
