"""The Volcengine Ark (Seedream) protocol without a platform: the request it sends, every
answer shape it reads, and its double's own rules, against a sandbox in this process."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from multidict import CIMultiDict

from shengtu.providers.base import UpstreamError, UpstreamJob
from shengtu.providers.volcengine_ark import VolcengineArkProvider, payload, read_answer
from shengtu.runner import running_sandbox
from shengtu.storage.images import sniff_image
from tests.support import SANDBOX_SCALE, png

SEEDREAM = "doubao-seedream-4-0-250828"
PATH = "/api/v3/images/generations"


def job(prompt: str = "一只猫", count: int = 1, images: int = 0, **params: Any) -> UpstreamJob:
    return UpstreamJob(
        task_no="TASK-" + secrets.token_hex(4),
        upstream_model=SEEDREAM,
        params=params,
        prompt=prompt,
        image_urls=[f"https://files.example.com/ref{i}.png" for i in range(images)],
        count=count,
    )


def headers(**values: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in values.items()})


def refusal(code: str, message: str = "refused") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "param": "", "type": "BadRequest"}}


def refused(status: int, body: Any, **head: str) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        read_answer(status, headers(**head), body, 1)
    return caught.value


# --- what it sends ---------------------------------------------------------------------


def test_a_text_task_sends_model_prompt_and_the_channels_fields_never_streamed() -> None:
    fields = {"size": "2K", "watermark": False, "model": "x", "prompt": "x", "stream": True}
    body = payload(UpstreamJob("TASK-1", SEEDREAM, fields, "一只猫"))
    assert body == {
        "model": SEEDREAM,
        "prompt": "一只猫",
        "size": "2K",
        "watermark": False,
        "stream": False,
    }


def test_references_go_as_one_url_or_a_list() -> None:
    assert payload(job(images=1))["image"] == "https://files.example.com/ref0.png"
    assert payload(job(images=3))["image"] == [
        f"https://files.example.com/ref{i}.png" for i in range(3)
    ]


def test_several_pictures_ask_for_a_set_of_at_most_that_many() -> None:
    body = payload(job(count=4))
    assert body["sequential_image_generation"] == "auto"
    assert body["sequential_image_generation_options"] == {"max_images": 4}
    # One picture: no set field at all (Seedream 3.0 has none) …
    assert "sequential_image_generation" not in payload(job())
    # … and a channel's "auto" cannot make a one-picture task a paid set.
    one = payload(
        job(
            sequential_image_generation="auto",
            sequential_image_generation_options={"max_images": 9},
        )
    )
    assert one["sequential_image_generation"] == "disabled"
    assert "sequential_image_generation_options" not in one


# --- what it reads ---------------------------------------------------------------------


def test_pictures_by_url_with_their_usage_and_the_request_id() -> None:
    usage = {"generated_images": 2, "output_tokens": 32768, "total_tokens": 32768}
    body = {
        "model": SEEDREAM,
        "created": 1757323224,
        "data": [
            {"url": "https://ark.example.com/a.jpeg", "size": "2048x2048"},
            {"url": "https://ark.example.com/b.jpeg", "size": "2048x2048"},
        ],
        "usage": usage,
    }
    state = read_answer(200, headers(x_request_id="0217abc"), body, 2)
    assert state.upstream_id == "ark-0217abc"
    assert (state.phase, state.raw_status, state.progress) == ("succeeded", "succeeded", 100)
    assert state.result_urls == ("https://ark.example.com/a.jpeg", "https://ark.example.com/b.jpeg")
    assert state.pictures == () and state.usage == usage
    # Never more pictures than the task asked for.
    assert len(read_answer(200, headers(), body, 1).result_urls) == 1
    assert read_answer(200, headers(), body, 1).upstream_id.startswith("ark-")


def test_inline_pictures_are_decoded() -> None:
    picture = png()
    body = {"data": [{"b64_json": base64.b64encode(picture).decode(), "size": "1024x1024"}]}
    state = read_answer(200, headers(), body, 1)
    assert state.pictures == (picture,) and state.result_urls == ()
    assert state.usage is None


def test_a_set_with_a_picture_refused_on_its_own_is_a_partial_result() -> None:
    body = {
        "data": [
            {"url": "https://ark.example.com/0.jpeg", "size": "2048x2048"},
            {"error": {"code": "OutputImageSensitiveContentDetected", "message": "sensitive"}},
            {"url": "https://ark.example.com/2.jpeg", "size": "2048x2048"},
            {"url": "https://ark.example.com/3.jpeg", "size": "2048x2048"},
        ],
        "usage": {"generated_images": 3, "output_tokens": 49152, "total_tokens": 49152},
    }
    state = read_answer(200, headers(), body, 4)
    assert state.phase == "succeeded" and state.raw_status == "partial"
    assert len(state.result_urls) == 3 and state.usage == body["usage"]
    # Fewer than asked, with no error: the model chose fewer; partial too.
    fewer = read_answer(200, headers(), {"data": body["data"][:1]}, 4)
    assert fewer.raw_status == "partial" and len(fewer.result_urls) == 1


def test_a_set_whose_every_picture_failed_says_why() -> None:
    moderated = {"error": {"code": "OutputImageSensitiveContentDetected", "message": "x"}}
    error = refused(200, {"data": [moderated, moderated]})
    assert error.message == "内容审核未通过:上游判定生成的图片含敏感内容"
    assert not error.transient and not error.uncertain
    # An internal error stopped the set before its first picture: nothing billed, try again.
    internal = {"error": {"code": "InternalServiceError", "message": "internal"}}
    error = refused(200, {"data": [internal], "usage": {"generated_images": 0}})
    assert error.transient and not error.uncertain
    assert "InternalServiceError" in error.message


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("InputTextSensitiveContentDetected", "提示词含敏感内容"),
        ("InputImageSensitiveContentDetected", "参考图含敏感内容"),
        ("OutputImageSensitiveContentDetected", "生成的图片含敏感内容"),
        ("SensitiveContentDetected.SevereViolation", "SensitiveContentDetected.SevereViolation"),
        ("InputImageRiskDetection", "InputImageRiskDetection"),
    ],
)
def test_a_content_refusal_is_a_moderation(code: str, says: str) -> None:
    error = refused(400, refusal(code))
    assert error.message.startswith("内容审核未通过:") and says in error.message
    assert not error.transient and not error.key_rejected and not error.uncertain
    # The same code at the top of a 200 without pictures means the same.
    assert refused(200, refusal(code)).message == error.message


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        (401, "AuthenticationError", "鉴权失败"),
        (403, "AccessDenied", "鉴权失败"),
        (403, "AccountOverdueError", "欠费"),
        (403, "OperationDenied.ServiceOverdue", "逾期"),
        (429, "SetLimitExceeded", "推理限额"),
    ],
)
def test_a_refused_account_disables_the_key(status: int, code: str, says: str) -> None:
    error = refused(status, refusal(code))
    assert error.key_rejected and not error.transient and says in error.message
    assert error.http_status == status


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, "InvalidEndpointOrModel.NotFound"),
        (404, "ModelNotOpen"),
        (403, "OperationDenied.ServiceNotOpen"),
        (429, "ModelAccountIpmRateLimitExceeded"),
        (429, "RateLimitExceeded.EndpointRPMExceeded"),
        (429, "QuotaExceeded"),
        (429, "ServerOverloaded"),
        (500, "InternalServiceError"),
        (503, ""),
        (404, ""),
    ],
)
def test_what_made_no_picture_fails_over(status: int, code: str) -> None:
    """Certain: no job exists; the next channel, or later."""
    error = refused(status, refusal(code) if code else None, retry_after="2")
    assert error.transient and not error.uncertain and not error.key_rejected, error.message
    assert code in error.message
    if status == 429:
        assert error.retry_after == 2.0 and "限流" in error.message


def test_a_bad_request_fails_the_task_naming_the_code() -> None:
    error = refused(400, refusal("InvalidParameter", "The parameter `size` is not valid."))
    assert not error.transient and not error.key_rejected and not error.uncertain
    assert error.message == "上游拒绝任务(InvalidParameter): The parameter `size` is not valid."
    assert refused(400, None).message == "上游拒绝任务: HTTP 400"


def test_an_answer_made_and_lost_is_uncertain() -> None:
    """Pictures made and paid for that we cannot use: never sent again blindly."""
    garbage = refused(200, None)
    assert garbage.uncertain and not garbage.transient
    undecodable = refused(200, {"data": [{"b64_json": "not base64!"}]})
    assert undecodable.uncertain and "无法解码" in undecodable.message
    # No picture and no usage: it may have made one. No picture and none billed: certain.
    assert refused(200, {"data": []}).uncertain
    none_made = refused(200, {"data": [], "usage": {"generated_images": 0}})
    assert not none_made.uncertain and not none_made.transient


# --- its double ------------------------------------------------------------------------


def with_sandbox(test: Callable[[str, str], Awaitable[None]]) -> None:
    async def run() -> None:
        key = "ark-" + secrets.token_hex(16)
        async with running_sandbox("127.0.0.1", 0, key, 0.05, scale=SANDBOX_SCALE) as end:
            await test(end.base_url, key)

    asyncio.run(run())


async def stats(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        return (await client.get(base_url + "/stats")).json()  # type: ignore[no-any-return]


def test_the_double_makes_sets_partial_sets_and_inline_pictures() -> None:
    async def test(base_url: str, key: str) -> None:
        provider = VolcengineArkProvider(base_url, key)
        try:
            four = await provider.submit(job("四季", 4, images=2, size="4K"))
            assert len(four.result_urls) == 4 and four.raw_status == "succeeded"
            assert four.usage == {
                "generated_images": 4,
                "output_tokens": 4 * 4096 * 4096 // 256,
                "total_tokens": 4 * 4096 * 4096 // 256,
            }
            async with httpx.AsyncClient() as client:
                pictures = [(await client.get(url)).content for url in four.result_urls]
            assert len(set(pictures)) == 4
            assert all(sniff_image(p).ext == "png" for p in pictures)

            fewer = await provider.submit(job("少一张 [sandbox:fewer]", 4))
            assert len(fewer.result_urls) == 3 and fewer.usage is not None
            assert fewer.usage["generated_images"] == 3

            # badimage in a set: one picture refused on its own, the other three fine.
            bad = await provider.submit(
                job("一张被拦 [sandbox:badimage]", 4, response_format="b64_json")
            )
            assert len(bad.pictures) == 3 and bad.raw_status == "partial"
            assert all(sniff_image(p).ext == "png" for p in bad.pictures)
            # Alone, its picture is not one.
            alone = await provider.submit(
                job("坏图 [sandbox:badimage]", 1, response_format="b64_json")
            )
            assert alone.pictures[0].startswith(b"<html>")

            wide = await provider.submit(
                job("宽幅", 1, size="2560x1440", response_format="b64_json")
            )
            assert sniff_image(wide.pictures[0]).ext == "png"
            endpoint = UpstreamJob("T", "ep-20250901-abcde", {}, "接入点", count=1)
            assert len((await provider.submit(endpoint)).result_urls) == 1

            seen = await stats(base_url)
            assert seen["references"]["四季"] == [len("https://files.example.com/ref0.png")] * 2
            assert all(n == 1 for n in seen["accepted"].values())
        finally:
            await provider.aclose()

    with_sandbox(test)


@pytest.mark.parametrize(
    ("change", "code", "param"),
    [
        ({"size": "800x800"}, "InvalidParameter", "size"),  # below 4.0's pixel floor
        ({"size": "3K"}, "InvalidParameter", "size"),
        ({"size": "4096x200"}, "InvalidParameter", "size"),  # wider than 16:1
        ({"image": [f"https://x.example/{i}.png" for i in range(11)]}, "InvalidParameter", "image"),
        ({"image": "/etc/passwd"}, "InvalidParameter", "image"),
        (
            {"model": "doubao-seedream-3-0-t2i-250415", "image": "https://x.example/a.png"},
            "InvalidParameter",
            "image",
        ),
        ({"model": "doubao-seedream-3-0-t2i-250415", "size": "2K"}, "InvalidParameter", "size"),
        ({"model": "doubao-seedream-4-5-251128", "size": "1K"}, "InvalidParameter", "size"),
        (
            {
                "sequential_image_generation": "auto",
                "sequential_image_generation_options": {"max_images": 16},
            },
            "InvalidParameter",
            "sequential_image_generation_options.max_images",
        ),
        (
            {
                "image": [f"https://x.example/{i}.png" for i in range(10)],
                "sequential_image_generation": "auto",
                "sequential_image_generation_options": {"max_images": 6},
            },
            "InvalidParameter",
            "sequential_image_generation_options.max_images",
        ),
        (
            {"sequential_image_generation": "always"},
            "InvalidParameter",
            "sequential_image_generation",
        ),
        ({"response_format": "png"}, "InvalidParameter", "response_format"),
        ({"stream": True}, "InvalidParameter", "stream"),
        ({"prompt": ""}, "MissingParameter", "prompt"),
        ({"model": None}, "MissingParameter", "model"),
    ],
)
def test_the_double_refuses_what_seedream_refuses(
    change: dict[str, Any], code: str, param: str
) -> None:
    async def test(base_url: str, key: str) -> None:
        body = {
            k: v for k, v in {"model": SEEDREAM, "prompt": "猫", **change}.items() if v is not None
        }
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                base_url + PATH, json=body, headers={"Authorization": f"Bearer {key}"}
            )
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert (error["code"], error["param"], error["type"]) == (code, param, "BadRequest")
        assert error["message"].endswith(answer.headers["x-request-id"])
        assert (await stats(base_url))["submits"] == 0

    with_sandbox(test)


def test_the_double_refuses_a_wrong_key_and_an_unknown_model_as_ark_does() -> None:
    async def test(base_url: str, key: str) -> None:
        async with httpx.AsyncClient() as client:
            wrong = await client.post(
                base_url + PATH,
                json={"model": SEEDREAM, "prompt": "猫"},
                headers={"Authorization": "Bearer ark-wrong"},
            )
            unknown = await client.post(
                base_url + PATH,
                json={"model": "doubao-seedream-9-9", "prompt": "猫"},
                headers={"Authorization": f"Bearer {key}"},
            )
        assert wrong.status_code == 401
        error = wrong.json()["error"]
        assert (error["code"], error["type"]) == ("AuthenticationError", "Unauthorized")
        assert error["message"].startswith(
            "The API key or AK/SK in the request is missing or invalid."
        )
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "InvalidEndpointOrModel.NotFound"

        # check(): the key proven by an empty request, which makes nothing.
        good = VolcengineArkProvider(base_url, key)
        bad = VolcengineArkProvider(base_url, "ark-" + secrets.token_hex(16))
        nowhere = VolcengineArkProvider(base_url + "/elsewhere", key)
        try:
            await good.check()
            with pytest.raises(UpstreamError) as caught:
                await bad.check()
            assert caught.value.key_rejected and "鉴权失败" in caught.value.message
            with pytest.raises(UpstreamError) as caught:
                await nowhere.check()
            assert not caught.value.key_rejected and "HTTP 404" in caught.value.message
        finally:
            for provider in (good, bad, nowhere):
                await provider.aclose()
        assert (await stats(base_url))["submits"] == 0

    with_sandbox(test)
