"""A job of several pictures (its ``count``, a task's ``n``) through the OpenAI Images and
Replicate protocols, against the sandbox's doubles in this process: every picture kept,
the upstream's usage recorded, ``[sandbox:fewer]`` delivering one fewer, and a count the
upstream does not allow refused by its double."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.http import Answer
from shengtu.providers.openai_images import OpenAIImagesProvider
from shengtu.providers.replicate import ReplicateProvider
from shengtu.runner import running_sandbox
from shengtu.storage.images import sniff_image
from tests.support import SANDBOX_SCALE, png

LATENCY = 0.05


def with_sandbox(test: Callable[[str, str], Awaitable[None]]) -> None:
    """Runs ``test(base URL, key)`` against a sandbox served in this process."""

    async def run() -> None:
        key = "sk-" + secrets.token_hex(12)
        async with running_sandbox("127.0.0.1", 0, key, LATENCY, scale=SANDBOX_SCALE) as end:
            await test(end.base_url, key)

    asyncio.run(run())


def job(prompt: str, count: int, **params: Any) -> UpstreamJob:
    return UpstreamJob(
        task_no="TASK-" + secrets.token_hex(4),
        upstream_model="gpt-image-1",
        params=params,
        prompt=prompt,
        count=count,
    )


def assert_distinct_pngs(pictures: list[bytes]) -> None:
    for picture in pictures:
        assert sniff_image(picture).ext == "png"
    assert len(set(pictures)) == len(pictures)


async def fetch_all(urls: tuple[str, ...]) -> list[bytes]:
    async with httpx.AsyncClient() as client:
        answers = [await client.get(url) for url in urls]
    assert [a.status_code for a in answers] == [200] * len(urls)
    return [a.content for a in answers]


async def accepted(base_url: str) -> dict[str, int]:
    async with httpx.AsyncClient() as client:
        stats: dict[str, Any] = (await client.get(base_url + "/stats")).json()
    return stats["accepted"]  # type: ignore[no-any-return]


def test_openai_answers_every_picture_asked_with_its_usage() -> None:
    async def test(base_url: str, key: str) -> None:
        provider = OpenAIImagesProvider(base_url, key)
        try:
            state = await provider.submit(job("三只猫", 3, size="1024x1024"))
            assert state.phase == "succeeded" and state.result_urls == ()
            assert len(state.pictures) == 3
            assert_distinct_pngs(list(state.pictures))
            usage = state.usage
            assert usage is not None
            assert usage["output_tokens"] == 3 * 4160  # gpt-image-1's, a square at high
            assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
            assert usage["input_tokens_details"]["image_tokens"] == 0

            # By URL: each serves a picture of its own.
            by_url = await provider.submit(
                job("三座山", 3, size="1536x1024", response_format="url", quality="low")
            )
            assert by_url.pictures == () and len(by_url.result_urls) == 3
            assert_distinct_pngs(await fetch_all(by_url.result_urls))
            assert by_url.usage is not None and by_url.usage["output_tokens"] == 3 * 408

            # An edit (multipart) sends n too, and counts its reference picture's tokens.
            edit = UpstreamJob(
                task_no="TASK-edit",
                upstream_model="gpt-image-1",
                params={},
                prompt="改成夜景",
                images=((png(), "image/png"),),
                count=2,
            )
            edited = await provider.submit(edit)
            assert len(edited.pictures) == 2
            assert_distinct_pngs(list(edited.pictures))
            assert edited.usage is not None
            assert edited.usage["input_tokens_details"]["image_tokens"] > 0

            # One picture: one, as before.
            single = await provider.submit(job("一只猫", 1))
            assert len(single.pictures) == 1 and single.usage is not None
            assert (await accepted(base_url)) == {
                "三只猫": 1,
                "三座山": 1,
                "改成夜景": 1,
                "一只猫": 1,
            }
        finally:
            await provider.aclose()

    with_sandbox(test)


def test_openai_fewer_delivers_one_picture_fewer_never_none() -> None:
    async def test(base_url: str, key: str) -> None:
        provider = OpenAIImagesProvider(base_url, key)
        try:
            fewer = await provider.submit(job("少一张 [sandbox:fewer]", 3))
            assert len(fewer.pictures) == 2
            assert_distinct_pngs(list(fewer.pictures))
            assert fewer.usage is not None and fewer.usage["output_tokens"] == 2 * 4160
            by_url = await provider.submit(
                job("少一张网址 [sandbox:fewer]", 4, response_format="url")
            )
            assert len(by_url.result_urls) == 3
            assert_distinct_pngs(await fetch_all(by_url.result_urls))
            # The picture it did not make is not served.
            async with httpx.AsyncClient() as client:
                missing = by_url.result_urls[0].removesuffix(".png") + "-i3.png"
                assert (await client.get(missing)).status_code == 404
            one = await provider.submit(job("只要一张 [sandbox:fewer]", 1))
            assert len(one.pictures) == 1
        finally:
            await provider.aclose()

    with_sandbox(test)


@pytest.mark.parametrize(
    ("count", "code"), [(0, "integer_below_min_value"), (11, "integer_above_max_value")]
)
def test_openai_double_refuses_a_count_openai_does_not_allow(count: int, code: str) -> None:
    async def test(base_url: str, key: str) -> None:
        provider = OpenAIImagesProvider(base_url, key)
        try:
            with pytest.raises(UpstreamError) as refused:
                await provider.submit(job("太多了", count))
            error = refused.value
            assert not error.transient and not error.uncertain and error.http_status == 400
            assert error.message.startswith("上游拒绝任务: Invalid 'n'")
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as client:
                answer = await client.post(
                    base_url + "/v1/images/generations",
                    json={"model": "gpt-image-1", "prompt": "直接问", "n": count},
                )
                assert answer.status_code == 400
                assert answer.json()["error"]["code"] == code
                assert answer.json()["error"]["param"] == "n"
                edit = await client.post(
                    base_url + "/v1/images/edits",
                    data={"model": "gpt-image-1", "prompt": "改图", "n": "two"},
                    files={"image": ("ref.png", png(), "image/png")},
                )
                assert edit.status_code == 400
                assert edit.json()["error"]["code"] == "invalid_type"
            # No job was made for any of them.
            assert (await accepted(base_url)) == {}
        finally:
            await provider.aclose()

    with_sandbox(test)


async def finished(provider: ReplicateProvider, state: UpstreamState) -> UpstreamState:
    for _ in range(100):
        if state.phase in ("succeeded", "failed"):
            return state
        await asyncio.sleep(LATENCY / 2)
        state = await provider.poll(state.upstream_id)
    raise AssertionError(f"prediction not done: {state}")


def flux(prompt: str, count: int) -> UpstreamJob:
    return UpstreamJob(
        task_no="TASK-" + secrets.token_hex(4),
        upstream_model="black-forest-labs/flux-schnell",
        params={"aspect_ratio": "1:1"},
        prompt=prompt,
        count=count,
    )


def test_replicate_num_outputs_gives_a_distinct_url_for_each_picture() -> None:
    async def test(base_url: str, key: str) -> None:
        provider = ReplicateProvider(base_url, key)
        try:
            state = await finished(provider, await provider.submit(flux("两只狗", 2)))
            assert state.phase == "succeeded" and len(state.result_urls) == 2
            assert len(set(state.result_urls)) == 2
            assert_distinct_pngs(await fetch_all(state.result_urls))
            assert state.usage == {
                "image_count": 2,
                "predict_time": round(LATENCY * 0.9, 3),
                "total_time": LATENCY,
            }

            fewer = await finished(provider, await provider.submit(flux("少 [sandbox:fewer]", 4)))
            assert len(fewer.result_urls) == 3
            assert_distinct_pngs(await fetch_all(fewer.result_urls))
            assert fewer.usage is not None and fewer.usage["image_count"] == 3

            single = await finished(provider, await provider.submit(flux("一只狗", 1)))
            assert len(single.result_urls) == 1 and single.usage is not None

            failed = await finished(provider, await provider.submit(flux("违规 [sandbox:fail]", 2)))
            assert failed.phase == "failed" and failed.usage is not None
            assert "predict_time" in failed.usage

            with pytest.raises(UpstreamError) as refused:
                await provider.submit(flux("五只狗", 5))
            error = refused.value
            assert not error.transient and not error.uncertain and error.http_status == 422
            assert error.message == (
                "上游拒绝任务: input.num_outputs: Must be less than or equal to 4"
            )
            assert "五只狗" not in await accepted(base_url)
        finally:
            await provider.aclose()

    with_sandbox(test)


def test_replicate_asks_num_outputs_only_for_more_than_one() -> None:
    """One picture: the request is as it was; several: ``num_outputs`` says how many."""
    sent: list[dict[str, Any]] = []

    class Recording(ReplicateProvider):
        async def _send(self, method: str, path: str, *, task_no: str, **kwargs: Any) -> Answer:
            sent.append(kwargs["json"])
            raise UpstreamError("recorded", transient=True)

    async def run() -> None:
        provider = Recording("http://127.0.0.1:9", "r8_x")
        for count in (1, 3):
            with pytest.raises(UpstreamError):
                await provider.submit(flux("猫", count))

    asyncio.run(run())
    assert sent == [
        {"input": {"prompt": "猫", "aspect_ratio": "1:1"}},
        {"input": {"prompt": "猫", "aspect_ratio": "1:1", "num_outputs": 3}},
    ]


def test_an_openai_answer_keeps_every_usable_item() -> None:
    """Both kinds in one answer are both kept; an item that is neither is skipped."""
    from shengtu.providers.openai_images import _pictures

    picture = "iVBORw0KGgo="  # b"\x89PNG\r\n\x1a\n"
    state = _pictures(
        {
            "data": [
                {"b64_json": picture},
                {"url": "https://example.com/a.png"},
                {"revised_prompt": "nothing"},
                "junk",
                {"b64_json": picture},
            ],
            "usage": {"input_tokens": 9, "output_tokens": 272, "total_tokens": 281},
        }
    )
    assert state.pictures == (b"\x89PNG\r\n\x1a\n",) * 2
    assert state.result_urls == ("https://example.com/a.png",)
    assert state.usage == {"input_tokens": 9, "output_tokens": 272, "total_tokens": 281}
    assert _pictures({"data": [{"url": "https://example.com/b.png"}]}).usage is None
    with pytest.raises(UpstreamError, match="没有图片"):
        _pictures({"data": [{"revised_prompt": "x"}], "usage": {}})
    with pytest.raises(UpstreamError, match="无法解码"):
        _pictures({"data": [{"b64_json": "not base64!"}]})
    # A broken item beside a good one: the good one is delivered.
    assert len(_pictures({"data": [{"b64_json": "!!"}, {"b64_json": picture}]}).pictures) == 1
