"""Gemini image models through the Gemini API (issue 23): channels speaking it against the
sandbox's double, over real HTTP, with every fault kind it can show, on SQLite, MariaDB
and PostgreSQL; the provider's reading of each answer shape; and the demo's model."""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from shengtu.providers.base import UpstreamError, UpstreamJob
from shengtu.providers.gemini import GeminiProvider, _refusal, answer_state, request_body
from shengtu.runner import running_sandbox
from shengtu.storage.images import sniff_image
from tests.support import SANDBOX_SCALE, Platform, cli, drawn, ok, png

FLASH, EDIT, PRO = "gem-flash", "gem-edit", "gem-pro"
PRO_PARAMETERS = {
    "choices": {
        "aspectRatio": {"values": ["1:1", "16:9"], "default": "1:1"},
        "resolution": {"values": ["1K", "2K", "4K"], "default": "1K"},
    },
    "maxN": 2,
}


def add_models(platform: Platform) -> None:
    platform.add_model(FLASH, task_type="text_to_image", cost=30, upstream_model="nano")
    platform.add_model(EDIT, task_type="image_to_image", cost=35, upstream_model="nano")
    made = platform.admin_client.post(
        "/admin/models",
        json={
            "modelName": PRO,
            "description": PRO,
            "pointsCost": 50,
            "taskType": "both",
            "upstreamModel": "nano-pro",
            "parameters": PRO_PARAMETERS,
        },
    )
    ok(made)


def served(upstream_model: str) -> list[dict[str, Any]]:
    """The three models, each under ``upstream_model`` but the real channel's own."""
    return [
        {"modelName": FLASH, "upstreamModel": upstream_model},
        {"modelName": EDIT, "upstreamModel": upstream_model},
        {"modelName": PRO, "upstreamModel": upstream_model},
    ]


def size_of(url: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(httpx.get(url).content)).size


def test_gemini_channels_with_every_fault(own_platform: Callable[..., Platform]) -> None:
    with own_platform(
        SHENGTU_MAX_INFLIGHT_TASKS="50",
        SHENGTU_TASK_DEADLINE="30",
        SHENGTU_SUBMIT_ATTEMPTS="2",
    ) as platform:
        admin = platform.admin_client
        sandbox, key = platform.sandbox_upstream("AIza" + secrets.token_hex(16))
        add_models(platform)
        # First by priority: a key Google does not know; then a channel naming a model the
        # upstream does not have (404: certain, next channel); then the real one.
        wrong = platform.add_channel(
            settle=False,
            name="Gemini-坏密钥",
            protocol="gemini",
            baseUrl=sandbox,
            addKeys=["AIza" + secrets.token_hex(16)],
            priority=9,
            models=served("gemini-2.5-flash-image"),
        )
        platform.add_channel(
            settle=False,
            name="Gemini-无此模型",
            protocol="gemini",
            baseUrl=sandbox,
            addKeys=[key],
            priority=5,
            models=served("gemini-1.0-pro"),
        )
        good = platform.add_channel(
            settle=False,
            name="Gemini",
            protocol="gemini",
            baseUrl=sandbox,
            addKeys=[key],
            timeoutSeconds=2,
            models=[
                {
                    "modelName": FLASH,
                    "upstreamModel": "gemini-2.5-flash-image",
                    "upstreamParams": {"aspectRatio": "21:9"},
                },
                {"modelName": EDIT, "upstreamModel": "gemini-2.5-flash-image"},
                {
                    "modelName": PRO,
                    "upstreamModel": "gemini-3-pro-image-preview",
                    # Its thinking drafts come back beside the picture: never stored.
                    "upstreamParams": {"thinkingConfig": {"includeThoughts": True}},
                    "paramMap": {"resolution": {"upstream": "imageSize"}},
                },
            ],
        )
        assert wrong["timeoutSeconds"] == 300 and good["timeoutSeconds"] == 2
        checked = ok(admin.post(f"/admin/channels/{wrong['id']}/test"))
        assert checked["ok"] is False and "鉴权失败" in checked["message"], checked
        assert ok(admin.post(f"/admin/channels/{good['id']}/test"))["ok"] is True
        time.sleep(1.2)  # workers re-read the channels every second

        user = platform.new_user(points=1000)
        upload = user.client.post(
            "/user/files/upload", files={"file": ("ref.png", png(), "image/png")}
        ).json()["data"]
        cases: dict[str, tuple[str, str, str | None]] = {
            "plain": (FLASH, "一片森林", None),
            "edit": (EDIT, "加上雪", upload["url"]),
            "throttled": (FLASH, "限流后成功 [sandbox:submit429]", None),
            "fewer": (FLASH, "少一张 [sandbox:fewer]", None),
            "blocked": (FLASH, "违规提示词 [sandbox:fail]", None),
            "unsafe": (EDIT, "违规改图 [sandbox:fail]", upload["url"]),
            "words": (FLASH, "只回了文字 [sandbox:html]", None),
            "down": (FLASH, "上游故障 [sandbox:error500]", None),
            "lost": (FLASH, "回答丢失 [sandbox:slowsubmit]", None),
            "hung": (FLASH, "不回答 [sandbox:timeout]", None),
            "garbage": (FLASH, "乱码 [sandbox:garbage]", None),
            "badimage": (FLASH, "坏图 [sandbox:badimage]", None),
            "truncated": (FLASH, "半张图 [sandbox:truncated]", None),
        }
        numbers = user.submit_all(cases)
        # Two pictures asked of a model that makes one a call: one delivered, one refunded.
        two = user.submit(
            modelName=PRO,
            prompt="高清横图两张",
            parameters={"aspectRatio": "16:9", "resolution": "2K"},
            n=2,
        )
        assert two["code"] == 200, two
        numbers["pro"] = two["data"]["taskNo"]
        done = {case: user.wait(n, timeout=40) for case, n in numbers.items()}

        for case in ("plain", "edit", "throttled", "fewer", "pro"):
            assert done[case]["status"] == "completed", (case, done[case])
        # At the ratio asked (21:9), the reference's own (4:3, as Gemini does when none is
        # asked), and 16:9 at 2K (twice 1K) for gemini-3-pro-image.
        assert size_of(done["plain"]["resultUrl"]) == drawn(1536, 672)
        assert size_of(done["edit"]["resultUrl"]) == drawn(1152, 896)
        assert size_of(done["pro"]["resultUrl"]) == drawn(2 * 1344, 2 * 768)
        pro = done["pro"]
        assert (pro["pictures"], pro["delivered"], pro["pointsRefunded"]) == (2, 1, 50)
        assert done["fewer"]["delivered"] == 1

        def failed(case: str, words: str) -> None:
            task = done[case]
            assert task["status"] == "failed" and words in task["errorMessage"], (case, task)

        failed("blocked", "内容审核未通过:")
        failed("blocked", "blockReason=PROHIBITED_CONTENT")
        failed("unsafe", "内容审核未通过:")
        failed("unsafe", "finishReason=IMAGE_SAFETY")
        failed("words", "上游没有返回图片(finishReason=STOP)")
        failed("down", "上游服务错误(HTTP 500)")
        failed("lost", "无法确认上游是否已接受任务")
        failed("hung", "无法确认上游是否已接受任务")
        failed("garbage", "无法确认上游是否已接受任务")
        failed("badimage", "不是有效图片")
        failed("truncated", "不是有效图片")

        stats = httpx.get(sandbox + "/stats").json()
        # The edits carried the user's upload inline, byte for byte.
        assert stats["references"]["加上雪"] == [upload["size"]]
        accepted = stats["accepted"]
        prompts = {case: prompt for case, (_, prompt, _) in cases.items()}
        prompts["pro"] = "高清横图两张"
        # One generateContent that reached the model for every task, never two: the blocks
        # too (a block is an answer, not sent elsewhere); none for the 500s.
        for case in prompts.keys() - {"down"}:
            assert accepted[prompts[case]] == 1, (case, accepted)
        assert prompts["down"] not in accepted

        channels = {c["name"]: c for c in admin.get("/admin/channels").json()["data"]}
        bad_key = channels["Gemini-坏密钥"]["keys"][0]
        assert bad_key["enabled"] is False and "鉴权失败" in bad_key["disabledReason"]
        assert channels["Gemini"]["uncertainCount"] == 3  # lost, hung and garbage
        tries = [
            (t["channelName"], t["outcome"], t["httpStatus"])
            for n in numbers.values()
            for t in ok(admin.get(f"/admin/tasks/{n}/attempts"))
        ]
        assert ("Gemini-坏密钥", "key_rejected", 400) in tries
        assert ("Gemini-无此模型", "failed", 404) in tries
        outcomes = {(name, outcome) for name, outcome, _ in tries}
        assert ("Gemini", "refused") in outcomes  # the blocks: the task's content, not a fault

        # The tokens Google bills by, as the upstream reported them.
        usage = ok(admin.get(f"/admin/tasks/{numbers['plain']}"))["task"]["upstreamUsage"]
        assert {"modality": "IMAGE", "tokenCount": 1290} in usage["candidatesTokensDetails"]
        assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
        pro_usage = ok(admin.get(f"/admin/tasks/{numbers['pro']}"))["task"]["upstreamUsage"]
        assert {"modality": "IMAGE", "tokenCount": 1120} in pro_usage["candidatesTokensDetails"]

        # Charged: the five completed (the two-picture one for the one it delivered).
        assert user.balance() == 1000 - 30 * 3 - 35 - 50
        assert key not in "".join(p.log_text() for p in platform.processes)
        platform.audit()


def test_make_runs_demo_serves_gemini_image_through_the_sandbox(tmp_path: Path) -> None:
    """`make run` (`shengtu demo`, no upstream key): gemini-image, served by the built-in
    sandbox over the Gemini protocol, at the ratio the user chose, from text or a picture."""
    platform = Platform(tmp_path).start()
    try:
        cli(platform.env, "demo")
        user = platform.new_user(points=100)
        models = {m["modelName"]: m for m in ok(user.client.get("/user/ai/models"))}
        assert "21:9" in models["gemini-image"]["parameters"]["choices"]["aspectRatio"]["values"]
        tall = user.submit(
            modelName="gemini-image", prompt="演示竖图", parameters={"aspectRatio": "9:16"}
        )
        upload = user.client.post(
            "/user/files/upload", files={"file": ("ref.png", png(), "image/png")}
        ).json()["data"]
        edit = user.submit(modelName="gemini-image", prompt="演示改图", imageUrl=upload["url"])
        done = [user.wait(answer["data"]["taskNo"]) for answer in (tall, edit)]
        assert [task["status"] for task in done] == ["completed", "completed"], done
        assert size_of(done[0]["resultUrl"]) == drawn(768, 1344)
        assert size_of(done[1]["resultUrl"]) == drawn(1024, 1024)  # the default, 1:1
        assert user.balance() == 100 - 30 * 2
    finally:
        platform.stop()


# The provider's reading of each answer shape, without a platform.


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _refused(status: int, body: Any, headers: dict[str, str] | None = None) -> UpstreamError:
    failure = _refusal(status, body, headers or {})
    assert failure is not None
    return failure


def _error(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


def test_a_picture_is_the_answer_and_a_thought_or_a_word_is_not() -> None:
    final, draft = png((40, 30)), png((8, 6))
    state = answer_state(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "好的"},
                            {
                                "inlineData": {"mimeType": "image/png", "data": _b64(draft)},
                                "thought": True,
                            },
                            {"inlineData": {"mimeType": "text/plain", "data": _b64(b"hi")}},
                            {"inlineData": {"mimeType": "image/png", "data": _b64(final)}},
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1290},
            "responseId": "resp-1",
        }
    )
    assert state.pictures == (final,) and state.phase == "succeeded"
    assert state.upstream_id == "resp-1" and state.raw_status == "STOP"
    assert state.usage == {"promptTokenCount": 3, "candidatesTokenCount": 1290}
    # The request's snake_case spelling is read too.
    snake = answer_state(
        {
            "candidates": [
                {
                    "content": {
                        "parts": [{"inline_data": {"mime_type": "image/webp", "data": _b64(final)}}]
                    }
                }
            ]
        }
    )
    assert snake.pictures == (final,) and snake.upstream_id.startswith("gem-")


@pytest.mark.parametrize(
    ("body", "words", "uncertain"),
    [
        (
            {"promptFeedback": {"blockReason": "SAFETY"}},
            "内容审核未通过:提示词触发了上游的安全策略",
            False,
        ),
        ({"promptFeedback": {"blockReason": "OTHER"}}, "内容审核未通过:", False),
        ({"candidates": [{"finishReason": "IMAGE_SAFETY"}]}, "内容审核未通过:生成的图片", False),
        (
            {"candidates": [{"finishReason": "PROHIBITED_CONTENT", "content": {}}]},
            "内容审核未通过:",
            False,
        ),
        (
            {"candidates": [{"finishReason": "RECITATION"}]},
            "内容审核未通过:生成内容可能复现",
            False,
        ),
        (
            {
                "candidates": [
                    {"content": {"parts": [{"text": "我画不了"}]}, "finishReason": "STOP"}
                ]
            },
            "上游没有返回图片(finishReason=STOP):我画不了",
            False,
        ),
        (
            {"candidates": [{"finishReason": "NO_IMAGE"}]},
            "上游没有返回图片(finishReason=NO_IMAGE)",
            False,
        ),
        ({"candidates": []}, "上游没有返回图片(finishReason=无)", False),
        (
            {
                "candidates": [
                    {
                        "content": {
                            "parts": [{"inlineData": {"mimeType": "image/png", "data": "!!"}}]
                        }
                    }
                ]
            },
            "上游返回的图片数据无法解码",
            True,
        ),
        ([1, 2], "上游返回了无法解析的内容", True),
    ],
)
def test_an_answer_without_a_picture_says_why(body: Any, words: str, uncertain: bool) -> None:
    with pytest.raises(UpstreamError) as caught:
        answer_state(body)
    assert words in caught.value.message
    assert caught.value.transient is False and caught.value.uncertain is uncertain


def test_googles_errors_are_mapped() -> None:
    invalid_key = _refused(
        400,
        _error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"},
        ),
    )
    assert (
        invalid_key.key_rejected and not invalid_key.transient and "鉴权失败" in invalid_key.message
    )
    denied = _refused(
        403, _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers")
    )
    assert denied.key_rejected
    billing = _refused(400, _error(400, "FAILED_PRECONDITION", "User location is not supported"))
    assert billing.key_rejected and "上游账户不可用" in billing.message
    quota = _refused(
        429,
        _error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota",
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "47s"},
        ),
        {"retry-after": "3"},
    )
    assert quota.transient and not quota.uncertain and quota.retry_after == 47.0
    plain_429 = _refused(429, _error(429, "RESOURCE_EXHAUSTED", "slow down"), {"retry-after": "3"})
    assert plain_429.retry_after == 3.0
    missing = _refused(
        404, _error(404, "NOT_FOUND", "models/x is not found for API version v1beta")
    )
    assert missing.transient and not missing.key_rejected and "HTTP 404" in missing.message
    for status, code in ((500, "INTERNAL"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")):
        outage = _refused(status, _error(status, code, "try again"))
        assert outage.transient and not outage.uncertain and not outage.key_rejected
    bad = _refused(400, _error(400, "INVALID_ARGUMENT", "Unsupported aspect ratio: 7:3"))
    assert not bad.transient and "Unsupported aspect ratio: 7:3" in bad.message
    assert _refusal(200, {"candidates": []}, {}) is None


def test_the_request_carries_the_prompt_the_references_and_the_pictures_settings() -> None:
    reference = png()
    body = request_body(
        UpstreamJob(
            task_no="T",
            upstream_model="gemini-3-pro-image-preview",
            params={
                "aspectRatio": "16:9",
                "image_size": "4K",
                "temperature": 0.5,
                "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}],
                "n": 3,
            },
            prompt="一只猫",
            images=((reference, "image/png"),),
            count=3,
        )
    )
    (turn,) = body["contents"]
    assert turn["role"] == "user"
    assert turn["parts"] == [
        {"text": "一只猫"},
        {"inline_data": {"mime_type": "image/png", "data": _b64(reference)}},
    ]
    assert body["generationConfig"] == {
        "responseModalities": ["TEXT", "IMAGE"],
        "temperature": 0.5,
        "imageConfig": {"aspectRatio": "16:9", "imageSize": "4K"},
    }
    assert body["safetySettings"] == [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}]


def test_the_key_goes_in_googles_header_and_the_double_checks_it() -> None:
    async def run() -> None:
        key = "AIza" + secrets.token_hex(16)
        async with running_sandbox("127.0.0.1", 0, key, 0.01, scale=SANDBOX_SCALE) as end:
            provider = GeminiProvider(end.base_url, key)
            try:
                headers = provider._client().headers
                assert headers["x-goog-api-key"] == key and "Authorization" not in headers
                await provider.check()
                state = await provider.submit(
                    UpstreamJob("T", "models/gemini-2.5-flash-image", {"aspectRatio": "4:5"}, "猫")
                )
                info = sniff_image(state.pictures[0])
                assert (info.width, info.height) == drawn(896, 1152)
            finally:
                await provider.aclose()
            # The same key as an OAuth token, or in no header Google reads: refused.
            async with httpx.AsyncClient(base_url=end.base_url) as client:
                for headers in ({"Authorization": f"Bearer {key}"}, {"x-goog-api-key": key + "x"}):
                    answer = await client.get("/v1beta/models", headers=headers)
                    assert answer.status_code == 400
                    assert answer.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
                assert (await client.get("/v1beta/models", params={"key": key})).status_code == 200
                # Google reads an Authorization header as an OAuth token, even beside the key.
                both = {"x-goog-api-key": key, "Authorization": f"Bearer {key}"}
                answer = await client.get("/v1beta/models", headers=both)
                assert answer.status_code == 401
                assert answer.json()["error"]["status"] == "UNAUTHENTICATED"
                # Image models refuse several candidates, as the real ones do.
                many = await client.post(
                    "/v1beta/models/gemini-2.5-flash-image:generateContent",
                    headers={"x-goog-api-key": key},
                    json={
                        "contents": [{"parts": [{"text": "猫"}]}],
                        "generationConfig": {"candidateCount": 2},
                    },
                )
                assert many.status_code == 400
                assert "Multiple candidates is not enabled" in many.json()["error"]["message"]

    asyncio.run(run())
