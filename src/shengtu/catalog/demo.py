"""The demo catalog `make run` adds beside the spec's models."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from shengtu.db import Database
from shengtu.models.catalog import PointsConfig

# Served in `make run` by the sandbox's OpenAI Images and Replicate doubles; an operator
# selling them for real adds an `openai_images` or `replicate` channel (docs/channels.md).
DEMO_MODELS: tuple[dict[str, Any], ...] = (
    dict(
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
    dict(
        model_name="gpt-image-1-edit",
        description="GPT Image 图生图(OpenAI 图像接口)",
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
)


async def add_demo_models(db: Database) -> None:
    """Adds the demo models the catalog lacks; never changes one an admin has edited."""
    async with db.write() as session:
        have = set(await session.scalars(select(PointsConfig.model_name)))
        session.add_all(PointsConfig(**m) for m in DEMO_MODELS if m["model_name"] not in have)
