"""One catalog model of its own sizes, qualities and prices through the OpenAI images API,
driven by the official ``openai`` package: the demo's gpt-image-1, served by a channel of
the OpenAI Images double, for generations and edits alike; charged by its price rule, for
the pictures it made."""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
from collections.abc import Callable

import httpx
import openai
import pytest
from PIL import Image

from shengtu.catalog.demo import add_demo_models
from shengtu.db import Database
from tests.openai_compat.test_openai_api import api_key, picture
from tests.support import Platform, User, cli, drawn, ok, png


def add_demo_catalog(platform: Platform) -> None:
    """The demo models, as `make run` adds them, before the platform serves: its catalog
    cache then never held a catalog without them."""
    cli(platform.env, "migrate")

    async def add() -> None:
        db = Database(platform.settings().resolved_database_url)
        try:
            await add_demo_models(db)
        finally:
            await db.dispose()

    asyncio.run(add())


def decoded(item: openai.types.Image) -> Image.Image:
    assert item.b64_json and item.url is None
    return Image.open(io.BytesIO(base64.b64decode(item.b64_json)))


def tasks_of(user: User) -> list[dict[str, object]]:
    return list(ok(user.client.get("/user/ai/tasks/list", params={"size": 50}))["records"])


def test_gpt_image_1_honours_size_quality_and_n_and_charges_what_was_made(
    own_platform: Callable[..., Platform],
) -> None:
    platform = own_platform()
    add_demo_catalog(platform)
    with platform:
        # The channel's double draws at full size: the answer's pixels are the size asked.
        sandbox, key = platform.sandbox_upstream(
            "sk-" + secrets.token_hex(12), env={**platform.env, "SHENGTU_SANDBOX_SCALE": "1"}
        )
        platform.add_channel(
            protocol="openai_images",
            name="OpenAI",
            baseUrl=sandbox,
            addKeys=[key],
            models=[{"modelName": "gpt-image-1", "upstreamModel": "gpt-image-1"}],
        )
        user = platform.new_user(points=2000)
        client = openai.OpenAI(base_url=platform.url + "/v1", api_key=api_key(user), max_retries=0)

        card = next(m for m in client.models.list() if m.id == "gpt-image-1").to_dict()
        assert card["task_type"] == "both" and card["points"] == 40
        sizes = card["parameters"]["choices"]["size"]["values"]  # type: ignore[index]
        assert sizes == ["1024x1024", "1024x1536", "1536x1024"]
        assert card["price_rule"]["perReference"] == 5  # type: ignore[index]

        # Each size as asked, at its price: 40 × 1.5.
        tall = client.images.generate(
            model="gpt-image-1", prompt="灯塔", size="1024x1536", response_format="b64_json"
        )
        assert len(tall.data) == 1 and decoded(tall.data[0]).size == (1024, 1536)
        assert user.balance() == 2000 - 60
        wide = client.images.generate(model="gpt-image-1", prompt="海岸", size="1536x1024")
        assert len(wide.data) == 1 and wide.data[0].url
        assert picture(wide.data[0].url).size == (1536, 1024)
        assert user.balance() == 2000 - 120

        # The same model edits: a file, charged 40 + 5 for the reference picture.
        edited = client.images.edit(
            model="gpt-image-1", image=("ref.png", png((40, 60)), "image/png"), prompt="水彩"
        )
        assert len(edited.data) == 1 and picture(str(edited.data[0].url)).size == (1024, 1024)
        assert user.balance() == 2000 - 165
        made = tasks_of(user)
        assert [(t["modelName"], t["taskType"]) for t in made] == [
            ("gpt-image-1", "image_to_image"),
            ("gpt-image-1", "text_to_image"),
            ("gpt-image-1", "text_to_image"),
        ]
        stats = httpx.get(sandbox + "/stats").json()
        assert stats["references"]["水彩"] and stats["accepted"]["灯塔"] == 1

        # What the model lacks: 400 naming the field, nothing charged, no task.
        for asked, param in (
            ({"size": "512x512"}, "size"),
            ({"size": "1792x1024"}, "size"),
            ({"quality": "ultra"}, "quality"),
        ):
            with pytest.raises(openai.BadRequestError) as bad:
                client.images.generate(model="gpt-image-1", prompt="猫", **asked)  # type: ignore[call-overload]
            assert bad.value.status_code == 400
            assert bad.value.body["param"] == param, bad.value.body  # type: ignore[index]
            assert "1024x1536" in bad.value.message or param == "quality"
        with pytest.raises(openai.BadRequestError) as bad:
            client.images.edit(
                model="gpt-image-1",
                image=[("r.png", png(), "image/png")] * 5,
                prompt="猫",
            )
        assert bad.value.body["param"] == "image"  # type: ignore[index]
        assert user.balance() == 2000 - 165 and len(tasks_of(user)) == 3

        # quality=high: its fixed price, 160; recorded on the task.
        keyed = {"Idempotency-Key": secrets.token_hex(8)}
        high = client.images.generate(
            model="gpt-image-1", prompt="高质量", quality="high", extra_headers=keyed
        )
        assert len(high.data) == 1
        assert user.balance() == 2000 - 165 - 160
        # The quality is part of what the key stands for.
        with pytest.raises(openai.UnprocessableEntityError):
            client.images.generate(
                model="gpt-image-1", prompt="高质量", quality="low", extra_headers=keyed
            )
        assert user.balance() == 2000 - 165 - 160
        task = user.task(str(tasks_of(user)[0]["taskNo"]))
        assert task["parameters"]["quality"] == "high", task
        assert task["parameters"]["size"] == "1024x1024", task

        # n=3: one task of three pictures, three answers, three charged.
        before = user.balance()
        three = client.images.generate(
            model="gpt-image-1", prompt="三只猫", n=3, response_format="b64_json"
        )
        assert len(three.data) == 3
        assert len({item.b64_json for item in three.data}) == 3
        assert all(decoded(item).size == (1024, 1024) for item in three.data)
        assert user.balance() == before - 3 * 40
        task = user.task(str(tasks_of(user)[0]["taskNo"]))
        assert (task["pictures"], task["delivered"], task["pointsCost"]) == (3, 3, 120)
        assert len(tasks_of(user)) == 5

        # One fewer made than asked: the two made are answered, the third refunded.
        before = user.balance()
        fewer = client.images.generate(model="gpt-image-1", prompt="[sandbox:fewer] 狗", n=3)
        assert len(fewer.data) == 2 and len({item.url for item in fewer.data}) == 2
        assert user.balance() == before - 2 * 40
        task = user.task(str(tasks_of(user)[0]["taskNo"]))
        assert (task["pictures"], task["delivered"], task["pointsRefunded"]) == (3, 2, 40)
        assert sorted(task["resultUrls"]) == sorted(str(item.url) for item in fewer.data)

        # flux-schnell (the built-in sandbox's Replicate side, drawing at the suite's
        # scale): a size is its aspect ratio, and its 4 pictures a job are one task.
        before = user.balance()
        flux = client.images.generate(model="flux-schnell", prompt="草原", size="1344x768", n=2)
        assert [picture(str(item.url)).size for item in flux.data] == [drawn(1344, 768)] * 2
        assert user.balance() == before - 2 * 10
        task = user.task(str(tasks_of(user)[0]["taskNo"]))
        assert task["parameters"]["aspectRatio"] == "16:9" and task["pictures"] == 2, task

        checks = ok(platform.admin_client.get("/admin/ledger/audit"))
        assert all(check["ok"] for check in checks), checks
        platform.audit()
