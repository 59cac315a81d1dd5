"""The demo catalog (`make run`): gpt-image-1 one model for both task types with its sizes,
qualities and prices; a demo row an earlier version added is brought up to date only while
no admin has touched it."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from shengtu.catalog.demo import DEMO_MODELS, SUPERSEDED, add_demo_models
from shengtu.config import Settings
from shengtu.db import Database
from shengtu.migrate import upgrade
from shengtu.models.catalog import PointsConfig
from shengtu.pricing.parameters import Parameters
from shengtu.pricing.rules import PriceRule
from tests.databases import ScratchDatabase

COLUMNS = (
    "description",
    "points_cost",
    "task_type",
    "aspect_ratio",
    "provider",
    "upstream_model",
    "upstream_params",
    "enabled",
    "sort_order",
    "params",
    "price_rule",
)


def migrated(tmp_path: Path, database: ScratchDatabase) -> Database:
    settings = Settings(data_dir=tmp_path, database_url=database.url)
    upgrade(settings)
    return Database(settings.resolved_database_url)


async def rows(db: Database) -> dict[str, dict[str, Any]]:
    async with db.read() as session:
        found = await session.scalars(
            select(PointsConfig)
            .where(PointsConfig.provider != "suchuang")
            .order_by(PointsConfig.id)
        )
        return {r.model_name: {c: getattr(r, c) for c in COLUMNS} for r in found}


def test_the_demo_models_parameters_and_prices_are_valid_and_priced_as_described() -> None:
    gpt = next(m for m in DEMO_MODELS if m["model_name"] == "gpt-image-1")
    params, rule = Parameters.parse(gpt["params"]), PriceRule.parse(gpt["price_rule"])
    rule.check_against({n: c.values for n, c in params.choices.items()})
    base = Decimal(gpt["points_cost"])

    def each(size: str, quality: str, references: int = 0) -> Decimal:
        chosen = params.choose("gpt-image-1", {"size": size, "quality": quality}, 1, references)
        return rule.each(base, chosen.values, references)

    assert gpt["task_type"] == "both" and gpt["aspect_ratio"] is None
    assert each("1024x1024", "medium") == 40
    assert each("1024x1536", "medium") == each("1536x1024", "medium") == 60
    assert each("1024x1024", "low") == 10 and each("1024x1024", "high") == 160
    assert each("1536x1024", "high") == 240
    assert each("1024x1024", "medium", references=2) == 50  # 5 a reference picture
    assert params.max_n == 4 and params.max_references == 4
    flux = next(m for m in DEMO_MODELS if m["model_name"] == "flux-schnell")
    flux_params = Parameters.parse(flux["params"])
    wide = flux_params.choose("flux-schnell", {"aspectRatio": "16:9"}, 4)
    assert flux_params.upstream_fields(wide) == {"aspect_ratio": "16:9"}


def test_an_untouched_old_demo_row_is_upgraded_and_an_edited_one_is_left_alone(
    tmp_path: Path, fresh_database: ScratchDatabase
) -> None:
    db = migrated(tmp_path, fresh_database)

    async def go() -> None:
        try:
            # As an earlier `make run` left them: gpt-image-1 untouched, flux-schnell
            # disabled by the operator, gpt-image-1-edit as it still is.
            edit = next(m for m in DEMO_MODELS if m["model_name"] == "gpt-image-1-edit")
            async with db.write() as session:
                session.add(PointsConfig(**SUPERSEDED["gpt-image-1"]))
                session.add(PointsConfig(**{**SUPERSEDED["flux-schnell"], "enabled": False}))
                session.add(PointsConfig(**edit))
            before = await rows(db)
            await add_demo_models(db)
            after = await rows(db)
            new = {m["model_name"]: m for m in DEMO_MODELS}
            assert after["gpt-image-1"] == {c: new["gpt-image-1"][c] for c in COLUMNS}
            assert after["flux-schnell"] == before["flux-schnell"]
            assert after["flux-schnell"]["params"] in (None, {})
            assert after["gpt-image-1-edit"] == before["gpt-image-1-edit"]
            # Once up to date, nothing changes; nor does a row an admin edited since.
            await add_demo_models(db)
            assert await rows(db) == after
            async with db.write() as session:
                row = await session.scalar(
                    select(PointsConfig).where(PointsConfig.model_name == "gpt-image-1")
                )
                assert row is not None
                for column, value in SUPERSEDED["gpt-image-1"].items():
                    setattr(row, column, value)
                row.params = {"maxN": 2}  # the old row, but an admin gave it parameters
                row.price_rule = None
            edited = await rows(db)
            await add_demo_models(db)
            assert await rows(db) == edited
        finally:
            await db.dispose()

    asyncio.run(go())


def test_an_empty_catalog_gains_every_demo_model(
    tmp_path: Path, fresh_database: ScratchDatabase
) -> None:
    db = migrated(tmp_path, fresh_database)

    async def go() -> None:
        try:
            await add_demo_models(db)
            await add_demo_models(db)  # twice: nothing added twice
            found = await rows(db)
            assert list(found) == [m["model_name"] for m in DEMO_MODELS]
            for model in DEMO_MODELS:
                expected = {c: model.get(c) for c in COLUMNS}
                got = found[model["model_name"]]
                # A model without parameters or a rule stores the column's empty default.
                for column in ("params", "price_rule"):
                    if not expected[column]:
                        assert not got[column]
                        expected[column] = got[column]
                assert got == expected
        finally:
            await db.dispose()

    asyncio.run(go())
