"""The demo catalog `make run` adds beside the spec's models."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from shengtu.db import Database
from shengtu.models.catalog import PointsConfig

# gpt-image-1's choices and prices, after OpenAI's own (a 1024² medium picture ≈ 4× low
# and ¼ of high; a portrait or landscape one 1.5× a square).
GPT_IMAGE_PARAMS: dict[str, Any] = {
    "choices": {
        "size": {"values": ["1024x1024", "1024x1536", "1536x1024"], "default": "1024x1024"},
        "quality": {"values": ["low", "medium", "high"], "default": "medium"},
    },
    "maxN": 4,
    "maxReferences": 4,
}
GPT_IMAGE_PRICE: dict[str, Any] = {
    "choices": {
        "size": {"1024x1536": {"times": "1.5"}, "1536x1024": {"times": "1.5"}},
        "quality": {"low": {"points": 10}, "high": {"points": 160}},
    },
    "perReference": 5,
}
FLUX_PARAMS: dict[str, Any] = {
    "choices": {
        "aspectRatio": {
            "values": ["1:1", "16:9", "9:16", "4:3", "3:4"],
            "default": "1:1",
            "upstream": "aspect_ratio",
        }
    },
    "maxN": 4,
}
# FLUX through BFL's own API: one picture a request (no ``maxN``), a flat price a picture
# as BFL's ($0.04 for FLUX1.1 [pro] and Kontext [pro]); the ratio reaches flux-pro-1.1 as
# width × height, Kontext as ``aspect_ratio`` (shengtu.providers.bfl).
BFL_RATIOS: dict[str, Any] = {
    "values": ["1:1", "16:9", "9:16", "4:3", "3:4"],
    "default": "1:1",
    "upstream": "aspect_ratio",
}

# Served in `make run` by the sandbox's OpenAI Images, Replicate and BFL doubles; an operator
# selling them for real adds an `openai_images`, `replicate` or `bfl` channel
# (docs/channels.md, docs/protocols/bfl.md).
# gpt-image-1 serves both task types; gpt-image-1-edit stays for the clients and scripts
# that name it.
DEMO_MODELS: tuple[dict[str, Any], ...] = (
    dict(
        model_name="gpt-image-1",
        description=(
            "GPT Image 文生图/图生图(OpenAI 图像接口):每张 40 积分(1024x1024 中等质量),"
            "低质量 10、高质量 160,1024x1536/1536x1024 ×1.5,每张参考图 +5"
        ),
        points_cost=40,
        task_type="both",
        aspect_ratio=None,
        provider="openai_images",
        upstream_model="gpt-image-1",
        upstream_params={},
        params=GPT_IMAGE_PARAMS,
        price_rule=GPT_IMAGE_PRICE,
        enabled=True,
        sort_order=100,
    ),
    dict(
        model_name="gpt-image-1-edit",
        description="GPT Image 图生图(OpenAI 图像接口;gpt-image-1 也可图生图)",
        points_cost=45,
        task_type="image_to_image",
        aspect_ratio="1:1",
        provider="openai_images",
        upstream_model="gpt-image-1",
        upstream_params={"size": "1024x1024"},
        enabled=True,
        sort_order=101,
    ),
    dict(
        model_name="flux-schnell",
        description="FLUX.1 schnell 文生图(Replicate):每张 10 积分,宽高比 1:1/16:9/9:16/4:3/3:4",
        points_cost=10,
        task_type="text_to_image",
        aspect_ratio=None,
        provider="replicate",
        upstream_model="black-forest-labs/flux-schnell",
        upstream_params={},
        params=FLUX_PARAMS,
        enabled=True,
        sort_order=102,
    ),
    dict(
        model_name="flux-pro",
        description=(
            "FLUX1.1 [pro] 文生图(BFL 官方接口):每张 40 积分,宽高比 1:1/16:9/9:16/4:3/3:4,"
            "每个任务一张"
        ),
        points_cost=40,
        task_type="text_to_image",
        aspect_ratio=None,
        provider="bfl",
        upstream_model="flux-pro-1.1",
        upstream_params={},
        params={"choices": {"aspectRatio": BFL_RATIOS}},
        enabled=True,
        sort_order=103,
    ),
    dict(
        model_name="flux-kontext",
        description=(
            "FLUX.1 Kontext [pro] 文生图/图生图(BFL 官方接口):每张 40 积分,一张参考图,"
            "宽高比 1:1/16:9/9:16/4:3/3:4,每个任务一张"
        ),
        points_cost=40,
        task_type="both",
        aspect_ratio=None,
        provider="bfl",
        upstream_model="flux-kontext-pro",
        upstream_params={},
        params={"choices": {"aspectRatio": BFL_RATIOS}, "maxReferences": 1},
        enabled=True,
        sort_order=104,
    ),
)

# The demo rows earlier versions added, as they added them: a row still exactly so (no
# admin touched it) is brought up to its new definition.
SUPERSEDED: dict[str, dict[str, Any]] = {
    "gpt-image-1": dict(
        model_name="gpt-image-1",
        description="GPT Image 文生图(OpenAI 图像接口)",
        points_cost=40,
        task_type="text_to_image",
        aspect_ratio="1:1",
        provider="openai_images",
        upstream_model="gpt-image-1",
        upstream_params={"size": "1024x1024"},
        enabled=True,
        sort_order=100,
    ),
    "flux-schnell": dict(
        model_name="flux-schnell",
        description="FLUX.1 schnell 文生图(Replicate)",
        points_cost=10,
        task_type="text_to_image",
        aspect_ratio="1:1",
        provider="replicate",
        upstream_model="black-forest-labs/flux-schnell",
        upstream_params={"aspect_ratio": "1:1"},
        enabled=True,
        sort_order=102,
    ),
}


def _untouched(row: PointsConfig, old: dict[str, Any]) -> bool:
    """Whether ``row`` is still exactly the old demo definition ``old``: every column it
    set, and no parameters or price rule (which it never had)."""
    return (
        all(getattr(row, column) == value for column, value in old.items())
        and not row.params
        and not row.price_rule
    )


async def add_demo_models(db: Database) -> None:
    """Adds the demo models the catalog lacks, and brings a demo row an earlier version
    added up to date while it is exactly as added; never changes one an admin has edited."""
    async with db.write() as session:
        rows = {r.model_name: r for r in await session.scalars(select(PointsConfig))}
        for model in DEMO_MODELS:
            row = rows.get(model["model_name"])
            if row is None:
                session.add(PointsConfig(**model))
                continue
            old = SUPERSEDED.get(row.model_name)
            if old is not None and _untouched(row, old):
                for column, value in model.items():
                    setattr(row, column, value)
