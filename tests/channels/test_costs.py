"""The operator's cost follows the same parameters as the user's price (issue 22): a
channel model spells the model's choices its own way (``paramMap``) and prices them by a
rule over its ``costPerPicture`` (``costRule``); a completed task records that cost for
the pictures it delivered, and the upstream's usage, in the write that completes it; the
stats' margin is taken from it."""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from shengtu.assembly import build_context
from shengtu.models.catalog import PointsConfig
from shengtu.models.tasks import AiTask
from shengtu.tasks import service as tasks
from tests.support import Platform, User, drawn, ok

# A model's own choices, spelled for 速创 ("2:3"); the OpenAI channel spells them its way.
SIZES = {
    "choices": {
        "size": {
            "values": ["square", "portrait"],
            "default": "square",
            "map": {"square": "1:1", "portrait": "2:3"},
        }
    },
    "maxN": 4,
}
OPENAI_SPELLING = {"size": {"map": {"square": "1024x1024", "portrait": "1024x1536"}}}
PORTRAIT_TWICE = {"choices": {"size": {"portrait": {"times": "2"}}}}
RATIOS = {"choices": {"aspectRatio": {"values": ["1:1", "3:2"]}}, "maxN": 4}


def _model(name: str, provider: str, upstream_model: str, params: dict[str, Any]) -> PointsConfig:
    return PointsConfig(
        model_name=name,
        description=name,
        points_cost=10,
        task_type="text_to_image",
        provider=provider,
        upstream_model=upstream_model,
        upstream_params={},
        params=params,
    )


def _submit(
    platform: Platform, user: User, jobs: list[tuple[str, str, dict[str, Any], int]]
) -> list[str]:
    """Each (model, prompt, parameters, n) submitted in this process (the HTTP submit does
    not take parameters yet); the served worker carries them on."""

    async def go() -> list[str]:
        ctx = build_context(platform.settings(), role="api")
        await ctx.start()
        try:
            user_id = user.user_id()
            numbers = []
            for model, prompt, parameters, n in jobs:
                request = tasks.SubmitInput(
                    user_id, None, model, prompt, None, parameters=parameters, n=n
                )
                (detail,) = await tasks.submit_many(ctx, request, 1)
                numbers.append(detail.taskNo)
            return numbers
        finally:
            await ctx.aclose()

    return asyncio.run(go())


def _rows(platform: Platform, numbers: list[str]) -> dict[str, AiTask]:
    async def go() -> dict[str, AiTask]:
        ctx = build_context(platform.settings(), role="api")
        try:
            async with ctx.db.read() as session:
                found = await session.scalars(select(AiTask).where(AiTask.task_no.in_(numbers)))
                return {t.task_no: t for t in found}
        finally:
            await ctx.aclose()

    return asyncio.run(go())


def _add_models(platform: Platform, *models: PointsConfig) -> None:
    """Catalog models with parameters, written to the table as they are (no admin API
    between: what is recorded is the table's own)."""

    async def go() -> None:
        ctx = build_context(platform.settings(), role="api")
        try:
            async with ctx.db.write() as session:
                session.add_all(models)
        finally:
            await ctx.aclose()

    asyncio.run(go())


def _size(task: dict[str, Any]) -> tuple[int, int]:
    """The size of the task's first picture."""
    picture = httpx.get(task["resultUrl"])
    assert picture.status_code == 200, picture.text[:200]
    return Image.open(io.BytesIO(picture.content)).size  # type: ignore[no-any-return]


@pytest.fixture
def audited(audited: Platform) -> Iterator[Platform]:
    """The shared platform; the models a test adds are disabled after it, so that the
    catalog the other tests see (the spec's eight) is as it was."""
    yield audited
    for model in ok(audited.admin_client.get("/admin/models")):
        if model["enabled"] and model["modelName"].startswith("cost-"):
            name = model["modelName"]
            ok(audited.admin_client.put(f"/admin/models/{name}", json={"enabled": False}))


def test_a_task_records_its_channels_cost_for_the_pictures_delivered_and_the_usage(
    audited: Platform,
) -> None:
    platform, admin = audited, audited.admin_client
    tag = secrets.token_hex(3)
    inline, by_url, flux = f"cost-oai-{tag}", f"cost-oai-url-{tag}", f"cost-flux-{tag}"
    _add_models(
        platform,
        _model(inline, "openai_images", "gpt-image-1", SIZES),
        _model(by_url, "openai_images", "gpt-image-1", SIZES),
        _model(flux, "replicate", "black-forest-labs/flux-schnell", RATIOS),
    )
    openai_url, openai_key = platform.sandbox_upstream("sk-" + secrets.token_hex(12))
    replicate_url, replicate_key = platform.sandbox_upstream("r8_" + secrets.token_hex(12))
    served = {"upstreamModel": "gpt-image-1", "paramMap": OPENAI_SPELLING}
    openai = platform.add_channel(
        settle=False,
        name=f"OpenAI 成本 {tag}",
        protocol="openai_images",
        baseUrl=openai_url,
        addKeys=[openai_key],
        costPerPicture="0.05",
        models=[
            {"modelName": inline, **served, "costRule": PORTRAIT_TWICE},
            {"modelName": by_url, **served, "upstreamParams": {"response_format": "url"}},
        ],
    )
    replicate = platform.add_channel(
        name=f"Replicate 成本 {tag}",
        protocol="replicate",
        baseUrl=replicate_url,
        addKeys=[replicate_key],
        costPerPicture="0.03",
        models=[
            {
                "modelName": flux,
                "upstreamModel": "black-forest-labs/flux-schnell",
                "paramMap": {"aspectRatio": {"upstream": "aspect_ratio"}},
                "costRule": {"choices": {"aspectRatio": {"3:2": {"plus": "0.01"}}}},
            }
        ],
    )
    # Shown as stored; the rule in the one spelling it reads back as.
    (shown,) = [m for m in openai["models"] if m["modelName"] == inline]
    assert shown["paramMap"] == OPENAI_SPELLING
    assert shown["costRule"] == {"choices": {"size": {"portrait": {"times": "2"}}}}
    (plain,) = [m for m in openai["models"] if m["modelName"] == by_url]
    assert plain["costRule"] == {}

    user = platform.new_user(points=200)
    portrait = {"size": "portrait"}
    jobs = {
        "two": (inline, "两张竖图", portrait, 2),
        "fewer": (inline, "少一张 [sandbox:fewer]", portrait, 3),
        "url": (by_url, "两张方图", {"size": "square"}, 2),
        "spoiled": (inline, "坏图 [sandbox:badimage]", portrait, 1),
        "flux": (flux, "横图两张", {"aspectRatio": "3:2"}, 2),
    }
    numbers = dict(zip(jobs, _submit(platform, user, list(jobs.values())), strict=True))
    done = {case: user.wait(n, timeout=40) for case, n in numbers.items()}
    assert [done[c]["status"] for c in jobs] == ["completed"] * 3 + ["failed", "completed"], done
    found = _rows(platform, list(numbers.values()))
    rows = {case: found[n] for case, n in numbers.items()}

    # 0.05 a picture, × 2 for a portrait: the pictures delivered, not the pictures asked.
    assert (rows["two"].delivered, rows["two"].cost) == (2, Decimal("0.2"))
    assert (rows["fewer"].pictures, rows["fewer"].delivered) == (3, 2)
    assert rows["fewer"].cost == Decimal("0.2")
    assert done["fewer"]["pointsRefunded"] == 10
    assert rows["url"].cost == Decimal("0.1")  # squares: no rule on this model
    # Made and paid for upstream, but no picture of it could be used: the task failed
    # (refunded), and it records no cost rather than a figure invented.
    assert rows["spoiled"].channel_id == openai["id"] and rows["spoiled"].cost is None
    assert rows["flux"].cost == Decimal("0.08")  # (0.03 + 0.01) × 2

    # The channel's spelling reached the upstream: the OpenAI double refuses "2:3" and
    # draws what it was asked; Replicate's reads aspect_ratio, not aspectRatio.
    assert _size(done["two"]) == drawn(1024, 1536)
    assert _size(done["url"]) == drawn(1024, 1024)
    assert _size(done["flux"]) == drawn(1536, 1024)

    # The upstream's own usage: inline, by URL (kept from the submit's answer until the
    # copy completes the task) and polled (Replicate's metrics, with the last poll).
    two, fewer, url = rows["two"], rows["fewer"], rows["url"]
    assert two.upstream_usage is not None and two.upstream_usage["output_tokens"] == 2 * 6240
    assert fewer.upstream_usage is not None and fewer.upstream_usage["output_tokens"] == 2 * 6240
    assert url.upstream_usage is not None and url.upstream_usage["output_tokens"] == 2 * 4160
    assert rows["spoiled"].upstream_usage is not None
    assert rows["flux"].upstream_usage is not None
    assert rows["flux"].upstream_usage["image_count"] == 2

    # The margin is the points kept less the costs recorded.
    stats = admin.get("/admin/stats", params={"granularity": "hour"}).json()
    assert stats["code"] == 200, stats
    by_channel = {c["channelId"]: c for c in stats["data"]["byChannel"]}
    price = platform.settings().point_price
    oai = by_channel[openai["id"]]
    assert (oai["completed"], oai["failed"]) == (3, 1)
    assert (oai["charged"], oai["refunded"]) == (20 + 30 + 20 + 10, 10 + 10)
    assert Decimal(oai["cost"]) == Decimal("0.5")
    assert Decimal(oai["revenue"]) == 60 * price
    assert Decimal(oai["margin"]) == 60 * price - Decimal("0.5")
    rep = by_channel[replicate["id"]]
    assert Decimal(rep["cost"]) == Decimal("0.08")
    assert Decimal(rep["margin"]) == 20 * price - Decimal("0.08")


def test_a_bad_param_map_or_cost_rule_is_refused_and_changes_nothing(
    audited: Platform,
) -> None:
    platform = audited
    admin = platform.admin_client
    tag = secrets.token_hex(3)
    model = f"cost-bad-{tag}"
    _add_models(platform, _model(model, "openai_images", "gpt-image-1", SIZES))
    good = {"modelName": model, "upstreamModel": "gpt-image-1", "paramMap": OPENAI_SPELLING}
    made = platform.add_channel(
        settle=False,
        name=f"成本 {tag}",
        protocol="openai_images",
        baseUrl="http://127.0.0.1:9",
        addKeys=["sk-" + secrets.token_hex(8)],
        models=[{**good, "costRule": PORTRAIT_TWICE}],
    )
    before = admin.get(f"/admin/channels/{made['id']}").json()["data"]
    bad_maps: list[Any] = [
        {"size": "1024x1024"},
        {"colour": {"upstream": "color"}},
        {"size": {"upstream": 5}},
        {"size": {"upstream": ""}},
        {"size": {"map": ["1024x1024"]}},
        {"size": {"map": {"square": True}}},
        {"size": {"spelling": {}}},
        ["size"],
    ]
    bad_rules: list[Any] = [
        {"choices": {"size": {"portrait": {"times": 0}}}},
        {"choices": {"size": {"portrait": {"times": "2", "plus": 1}}}},
        {"choices": {"colour": {"red": {"plus": 1}}}},
        {"choices": {"size": {"portrait": {"points": 1}}, "quality": {"high": {"points": 2}}}},
        {"perReference": -1},
        {"base": 1},
        "2x",
    ]
    cases = [{"paramMap": m} for m in bad_maps] + [{"costRule": r} for r in bad_rules]
    for i, bad in enumerate(cases):
        name = f"坏 {tag} {i}"
        created = admin.post(
            "/admin/channels",
            json={
                "name": name,
                "protocol": "openai_images",
                "baseUrl": "http://127.0.0.1:9",
                "addKeys": ["sk-" + secrets.token_hex(8)],
                "models": [{**good, **bad}],
            },
        )
        body = created.json()
        assert created.status_code == 400 and body["code"] == 400, (bad, body)
        changed = admin.put(
            f"/admin/channels/{made['id']}",
            json={"models": [{**good, **bad}], "priority": 7},
        ).json()
        assert changed["code"] == 400, (bad, changed)
        listed = admin.get("/admin/channels").json()["data"]
        assert name not in [c["name"] for c in listed]
    assert "costRule" in str(
        admin.post(
            "/admin/channels",
            json={
                "name": f"坏 {tag}",
                "protocol": "openai_images",
                "baseUrl": "http://127.0.0.1:9",
                "addKeys": ["sk-" + secrets.token_hex(8)],
                "models": [{**good, "costRule": {"perReference": -1}}],
            },
        ).json()["message"]
    )
    after = admin.get(f"/admin/channels/{made['id']}").json()["data"]
    assert after["models"] == before["models"] and after["priority"] == before["priority"]
    assert after["updateTime"] == before["updateTime"]
