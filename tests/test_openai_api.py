"""The OpenAI images API, driven by the official ``openai`` package, sync and async."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from tests.support import Platform, User, png


def api_key(user: User) -> str:
    body = user.client.post("/user/api-keys", json={"name": "openai"}).json()
    assert body["code"] == 200, body
    return str(body["data"]["key"])


def picture(url: str) -> Image.Image:
    r = httpx.get(url)
    assert r.status_code == 200, r.text
    return Image.open(io.BytesIO(r.content))


def test_the_openai_sdk_generates_edits_and_meets_clear_errors(audited: Platform) -> None:
    user = audited.new_user(points=1000)
    client = openai.OpenAI(base_url=audited.url + "/v1", api_key=api_key(user), max_retries=0)

    names = [m.id for m in client.models.list()]
    assert "gpt-image-1" in names and "sc_soraimg_text_1x1" in names

    # An alias and a size choose the aspect-ratio model; its price is charged.
    wide = client.images.generate(model="gpt-image-1", prompt="海边的灯塔", size="1536x1024")
    assert len(wide.data) == 1 and wide.data[0].url
    assert wide.data[0].url.startswith(audited.url + "/files/")
    image = picture(wide.data[0].url)
    assert image.width > image.height
    assert user.balance() == 970

    # n=2 in b64_json: two pictures, charged together.
    pair = client.images.generate(
        model="sc_soraimg", prompt="竹林", n=2, size="1024x1024", response_format="b64_json"
    )
    assert len(pair.data) == 2
    for item in pair.data:
        assert item.b64_json and item.url is None
        decoded = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        assert decoded.width == decoded.height
    assert user.balance() == 910
    tasks = user.client.get("/user/ai/tasks/list", params={"size": 10}).json()["data"]
    assert [t["modelName"] for t in tasks["records"]] == [
        "sc_soraimg_text_1x1",
        "sc_soraimg_text_1x1",
        "sc_soraimg_text_3x2",
    ]

    # Edits with two uploaded files: an image-to-image task with both as references.
    edited = client.images.edit(
        model="gpt-image-1",
        image=[("a.png", png((40, 60)), "image/png"), ("b.png", png((60, 40)), "image/png")],
        prompt="把它画成水彩",
        size="1024x1536",
    )
    assert len(edited.data) == 1 and edited.data[0].url
    image = picture(edited.data[0].url)
    assert image.height > image.width
    latest = user.client.get("/user/ai/tasks/list", params={"size": 1}).json()["data"]
    assert latest["records"][0]["modelName"] == "sc_soraimg_img2img_2x3"
    assert latest["records"][0]["imageUrl"].count("/files/") == 2
    assert user.balance() == 875

    # A failed picture: 502, its reason, the points back, and no retry by the SDK.
    with pytest.raises(openai.InternalServerError) as failed:
        client.images.generate(model="gpt-image-1", prompt="[sandbox:fail] 猫")
    assert failed.value.status_code == 502
    assert "内容安全" in failed.value.message and "积分已退还" in failed.value.message
    assert user.balance() == 875

    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="gpt-image-1", prompt="猫", n=5)
    assert bad.value.body["param"] == "n" and bad.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="gpt-image-1", prompt="猫", size="640x480")
    assert bad.value.body["param"] == "size"
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="sc_soraimg_img2img_1x1", prompt="猫")
    assert bad.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError) as missing:
        client.images.generate(model="dall-e-9", prompt="猫")
    assert missing.value.body["param"] == "model"
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        openai.OpenAI(base_url=audited.url + "/v1", api_key="sk-nope", max_retries=0).models.list()
    assert unauthorized.value.body["code"] == "invalid_api_key"
    assert user.balance() == 875

    poor = audited.new_user(points=40)
    poor_client = openai.OpenAI(base_url=audited.url + "/v1", api_key=api_key(poor), max_retries=0)
    with pytest.raises(openai.RateLimitError) as broke:
        poor_client.images.generate(model="gpt-image-1", prompt="猫", n=2)
    assert broke.value.body["code"] == "insufficient_quota"
    assert poor.balance() == 40
    assert poor.client.get("/user/ai/tasks/list").json()["data"]["total"] == 0


def test_the_async_openai_client_runs_requests_side_by_side(audited: Platform) -> None:
    user = audited.new_user(points=300)
    key = api_key(user)

    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=audited.url + "/v1", api_key=key, max_retries=0
        ) as client:
            made, edited = await asyncio.gather(
                client.images.generate(model="gpt-image-1", prompt="星空", n=2),
                client.images.edit(
                    model="sc_soraimg", image=("ref.png", png(), "image/png"), prompt="油画"
                ),
            )
            assert len(made.data) == 2 and all(d.url for d in made.data)
            assert len(edited.data) == 1 and edited.data[0].url
            with pytest.raises(openai.BadRequestError):
                await client.images.edit(model="gpt-image-1", image=[], prompt="油画")

    asyncio.run(main())
    assert user.balance() == 300 - 2 * 30 - 35


def test_a_wait_that_runs_out_names_the_tasks_and_a_retry_resumes_it(tmp_path: Path) -> None:
    """Waiting is capped; the answer then names the tasks. The same Idempotency-Key picks
    them up again (never a second charge), and refuses while its first request runs."""
    platform = Platform(tmp_path, SHENGTU_OPENAI_WAIT_SECONDS="1.5").start()
    try:
        user = platform.new_user(points=100)
        headers = {"Authorization": f"Bearer {api_key(user)}", "Idempotency-Key": "job-1"}
        body = {"model": "gpt-image-1", "prompt": "[sandbox:timeout] 雪山"}

        async def two_at_once() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=platform.url, timeout=30) as c:
                first = asyncio.create_task(
                    c.post("/v1/images/generations", json=body, headers=headers)
                )
                await asyncio.sleep(0.5)
                second = await c.post("/v1/images/generations", json=body, headers=headers)
                return [await first, second]

        first, second = asyncio.run(two_at_once())
        assert second.status_code == 409, second.text
        assert first.status_code == 504, first.text
        assert first.headers["x-should-retry"] == "false"
        error = first.json()["error"]
        assert error["code"] == "generation_pending" and len(error["task_nos"]) == 1
        task_no = error["task_nos"][0]
        assert task_no in error["message"]
        assert user.balance() == 70

        again = httpx.post(
            platform.url + "/v1/images/generations", json=body, headers=headers, timeout=30
        )
        assert again.status_code == 504 and again.json()["error"]["task_nos"] == [task_no]
        assert user.balance() == 70
        other = httpx.post(
            platform.url + "/v1/images/generations",
            json={**body, "n": 2},
            headers=headers,
            timeout=30,
        )
        assert other.status_code == 422, other.text

        # The task's deadline fails it; the same key then answers that, with the points back.
        user.wait(task_no)
        final = httpx.post(
            platform.url + "/v1/images/generations", json=body, headers=headers, timeout=30
        )
        assert final.status_code == 502, final.text
        assert user.balance() == 100
        assert user.client.get("/user/ai/tasks/list").json()["data"]["total"] == 1
        platform.audit()
    finally:
        platform.stop()
