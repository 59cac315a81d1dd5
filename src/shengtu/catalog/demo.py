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
# Seedream 4.0's resolutions (it picks the shape from the prompt). Ark bills by the picture
# made, whatever its size; the demo sells a 4K one dearer and a 1K one cheaper, as an
# operator whose users wait and store more for 4K might. Up to 4 pictures is one job (a set).
SEEDREAM_PARAMS: dict[str, Any] = {
    "choices": {
        "resolution": {"values": ["1K", "2K", "4K"], "default": "2K", "upstream": "size"},
    },
    "maxN": 4,
    "maxReferences": 10,
}
SEEDREAM_PRICE: dict[str, Any] = {
    "choices": {"resolution": {"1K": {"times": "0.8"}, "4K": {"times": "2"}}},
}

# Gemini's image ratios, sent as its ``imageConfig.aspectRatio``; gemini-2.5-flash-image
# reads up to 3 reference pictures and makes one picture a call.
GEMINI_IMAGE_PARAMS: dict[str, Any] = {
    "choices": {
        "aspectRatio": {
            "values": ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"],
            "default": "1:1",
        }
    },
    "maxReferences": 3,
}

# 即梦 3.1's recommended 1K sizes (its API takes width and height: the provider splits a
# ``WxH`` choice). One picture a job: its API takes no count. One price: Volcengine bills
# 3.1 by the picture, whatever its size.
JIMENG_PARAMS: dict[str, Any] = {
    "choices": {
        "size": {
            "values": ["1328x1328", "1472x1104", "1104x1472", "1664x936", "936x1664"],
            "default": "1328x1328",
        }
    },
    "maxN": 1,
    "extra": ["seed", "use_pre_llm"],
}

# 通义万相's sizes, offered as OpenAI spells them (so /v1/images/generations can ask for
# them) and sent as DashScope spells them; it prices a picture the same at every size.
WANX_SIZES = ("1024x1024", "720x1280", "1280x720")
WANX_PARAMS: dict[str, Any] = {
    "choices": {
        "size": {
            "values": list(WANX_SIZES),
            "default": "1024x1024",
            "map": {size: size.replace("x", "*") for size in WANX_SIZES},
        }
    },
    "maxN": 4,
    "extra": ["seed", "negative_prompt"],
}

# Kling v1.5's aspect ratios (all but 21:9, which the sandbox cannot draw), up to 4 of the 9
# pictures a task may ask, and one reference picture (a subject reference: the channel
# field ``image_reference``, sent only beside a reference). Kling prices a picture alike
# whatever its ratio: no price rule.
KLING_PARAMS: dict[str, Any] = {
    "choices": {
        "aspectRatio": {
            "values": ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"],
            "default": "1:1",
            "upstream": "aspect_ratio",
        }
    },
    "maxN": 4,
    "maxReferences": 1,
    "extra": ["negative_prompt"],
}

# FLUX through BFL's own API: one picture a request (no ``maxN``), a flat price a picture
# as BFL's ($0.04 for FLUX1.1 [pro] and Kontext [pro]); the ratio reaches flux-pro-1.1 as
# width × height, Kontext as ``aspect_ratio`` (shengtu.providers.bfl).
BFL_RATIOS: dict[str, Any] = {
    "values": ["1:1", "16:9", "9:16", "4:3", "3:4"],
    "default": "1:1",
    "upstream": "aspect_ratio",
}

# Served in `make run` by the sandbox's doubles, one model or more per protocol; an
# operator selling them for real adds a channel of that protocol (docs/channels.md).
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
        model_name="seedream-4",
        description=(
            "豆包 Seedream 4.0 文生图/图生图(火山方舟):每张 30 积分(2K),1K ×0.8、4K ×2,"
            "最多 10 张参考图,一次最多 4 张(组图)"
        ),
        points_cost=30,
        task_type="both",
        aspect_ratio=None,
        provider="volcengine_ark",
        upstream_model="doubao-seedream-4-0-250828",
        upstream_params={},
        params=SEEDREAM_PARAMS,
        price_rule=SEEDREAM_PRICE,
        enabled=True,
        sort_order=103,
    ),
    # Google prices gemini-2.5-flash-image by the picture (1290 output tokens, whatever
    # its ratio): one price here too.
    dict(
        model_name="gemini-image",
        description=(
            "Gemini 2.5 Flash Image(Nano Banana)文生图/图生图(Gemini API):每张 30 积分,"
            "宽高比 1:1/2:3/3:2/3:4/4:3/4:5/5:4/9:16/16:9/21:9,最多 3 张参考图,每次一张"
        ),
        points_cost=30,
        task_type="both",
        aspect_ratio=None,
        provider="gemini",
        upstream_model="gemini-2.5-flash-image",
        upstream_params={},
        params=GEMINI_IMAGE_PARAMS,
        enabled=True,
        sort_order=104,
    ),
    dict(
        model_name="jimeng-t2i",
        description=(
            "即梦文生图 3.1(火山引擎智能视觉):每张 20 积分,"
            "尺寸 1328x1328/1472x1104/1104x1472/1664x936/936x1664"
        ),
        points_cost=20,
        task_type="text_to_image",
        aspect_ratio=None,
        provider="jimeng",
        upstream_model="jimeng_t2i_v31",
        upstream_params={},
        params=JIMENG_PARAMS,
        enabled=True,
        sort_order=105,
    ),
    dict(
        model_name="wanx-t2i",
        description=(
            "通义万相 2.1 极速版文生图(阿里云百炼 DashScope):每张 20 积分,"
            "尺寸 1024x1024/720x1280/1280x720,每次最多 4 张"
        ),
        points_cost=20,
        task_type="text_to_image",
        aspect_ratio=None,
        provider="dashscope",
        upstream_model="wanx2.1-t2i-turbo",
        upstream_params={},
        params=WANX_PARAMS,
        enabled=True,
        sort_order=106,
    ),
    # Served by the sandbox's Kling double; for real, a `kling` channel (docs/protocols/kling.md).
    dict(
        model_name="kling-image",
        description=(
            "可灵 Kling v1.5 文生图/图生图(可灵接口):每张 20 积分,"
            "宽高比 1:1/16:9/9:16/4:3/3:4/3:2/2:3,每次最多 4 张,可带 1 张参考图(主体参考)"
        ),
        points_cost=20,
        task_type="both",
        aspect_ratio=None,
        provider="kling",
        upstream_model="kling-v1-5",
        upstream_params={"image_reference": "subject"},
        params=KLING_PARAMS,
        enabled=True,
        sort_order=107,
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
        sort_order=108,
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
        sort_order=109,
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
