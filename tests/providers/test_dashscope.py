"""The DashScope (通义万相) provider against the sandbox's double in this process: the body
it sends, the header DashScope insists on, several pictures and a partial result, cancel
while queued and not after, and every answer shape it reads (without a server)."""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from PIL import Image

from shengtu.providers import dashscope
from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.dashscope import DashScopeProvider
from shengtu.providers.http import Answer
from shengtu.runner import running_sandbox
from tests.support import SANDBOX_SCALE, drawn

LATENCY = 0.2
T2I = "/api/v1/services/aigc/text2image/image-synthesis"


def with_sandbox(test: Callable[[str, str], Awaitable[None]], latency: float = LATENCY) -> None:
    """Runs ``test(base URL, key)`` against a sandbox served in this process."""

    async def run() -> None:
        key = "sk-" + secrets.token_hex(16)
        async with running_sandbox("127.0.0.1", 0, key, latency, scale=SANDBOX_SCALE) as end:
            await test(end.base_url, key)

    asyncio.run(run())


def job(prompt: str, count: int = 1, images: tuple[str, ...] = (), **params: Any) -> UpstreamJob:
    return UpstreamJob(
        task_no="TASK-" + secrets.token_hex(4),
        upstream_model="wanx2.1-imageedit" if images else "wanx2.1-t2i-turbo",
        params=params,
        prompt=prompt,
        image_urls=list(images),
        count=count,
    )


async def finished(provider: DashScopeProvider, state: UpstreamState) -> UpstreamState:
    for _ in range(200):
        if state.phase in ("succeeded", "failed"):
            return state
        await asyncio.sleep(LATENCY / 4)
        state = await provider.poll(state.upstream_id)
    raise AssertionError(f"task not done: {state}")


async def sizes(urls: tuple[str, ...]) -> list[tuple[int, int]]:
    async with httpx.AsyncClient() as client:
        answers = [await client.get(url) for url in urls]
    assert [a.status_code for a in answers] == [200] * len(urls)
    assert len({a.content for a in answers}) == len(urls)  # a picture each
    return [Image.open(io.BytesIO(a.content)).size for a in answers]


async def stats(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        return (await client.get(base_url + "/stats")).json()  # type: ignore[no-any-return]


def test_pictures_sizes_and_a_partial_result() -> None:
    async def test(base_url: str, key: str) -> None:
        provider = DashScopeProvider(base_url, key)
        try:
            await provider.check()
            queued = await provider.submit(job("三只猫", 3, size="1280*720", seed=7))
            assert (queued.phase, queued.raw_status) == ("queued", "PENDING")
            done = await finished(provider, queued)
            assert done.phase == "succeeded" and done.usage == {"image_count": 3}
            assert await sizes(done.result_urls) == [drawn(1344, 768)] * 3  # nearest 16:9

            # One of four pictures refused: the three made are delivered, and billed.
            fewer = await finished(
                provider, await provider.submit(job("少一张 [sandbox:fewer]", 4))
            )
            assert fewer.phase == "succeeded" and len(fewer.result_urls) == 3
            assert fewer.usage == {"image_count": 3}
            assert await sizes(fewer.result_urls) == [drawn(1024, 1024)] * 3

            # An edit sends its first reference as base_image_url, with a function.
            edit = await finished(
                provider,
                await provider.submit(
                    job("改成夜景", 1, ("https://x.test/a.png", "https://x.test/bb.png"))
                ),
            )
            assert edit.phase == "succeeded" and len(edit.result_urls) == 1
            # wan2.5-i2i-preview's shape: every reference, as input.images.
            many = await provider.submit(
                job(
                    "两张合一",
                    2,
                    ("https://x.test/a.png", "https://x.test/bb.png"),
                    imageField="images",
                )
            )
            assert len((await finished(provider, many)).result_urls) == 2
            seen = await stats(base_url)
            assert seen["references"] == {
                "改成夜景": [len("https://x.test/a.png")],
                "两张合一": [20, 21],
            }
            assert seen["accepted"] == {
                "三只猫": 1,
                "少一张 [sandbox:fewer]": 1,
                "改成夜景": 1,
                "两张合一": 1,
            }
        finally:
            await provider.aclose()

    with_sandbox(test)


def test_the_double_refuses_what_dashscope_refuses() -> None:
    async def test(base_url: str, key: str) -> None:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            body = {"model": "wanx2.1-t2i-turbo", "input": {"prompt": "同步调用"}}
            synchronous = await client.post(T2I, json=body)
            assert synchronous.status_code == 403
            assert synchronous.json()["code"] == "AccessDenied"
            assert (
                synchronous.json()["message"]
                == "current user api does not support synchronous calls"
            )
            # Left out, n is DashScope's default: four pictures, each paid.
            default = await client.post(
                T2I, json={**body, "input": {"prompt": "默认张数"}}, headers=dashscope.ASYNC
            )
            task_id = default.json()["output"]["task_id"]
            await asyncio.sleep(LATENCY * 1.5)
            polled = (await client.get(f"/api/v1/tasks/{task_id}")).json()
            assert polled["usage"] == {"image_count": 4}
            assert polled["output"]["task_metrics"] == {"TOTAL": 4, "SUCCEEDED": 4, "FAILED": 0}
            unknown = (await client.get("/api/v1/tasks/9e2b6ef6-285d-4efa")).json()
            assert unknown["output"] == {"task_id": "9e2b6ef6-285d-4efa", "task_status": "UNKNOWN"}
            wrong = await client.get(
                f"/api/v1/tasks/{task_id}", headers={"Authorization": "Bearer sk-wrong"}
            )
            assert wrong.status_code == 401 and wrong.json()["code"] == "InvalidApiKey"

        provider = DashScopeProvider(base_url, key)
        try:
            for params, count in (({"size": "2048*2048"}, 1), ({"size": "1024*1024"}, 5)):
                with pytest.raises(UpstreamError) as refused:
                    await provider.submit(job("不合规格", count, **params))
                error = refused.value
                assert error.http_status == 400 and not error.transient and not error.uncertain
                assert error.message.startswith("上游拒绝任务: InvalidParameter")
            assert "不合规格" not in (await stats(base_url))["accepted"]
        finally:
            await provider.aclose()

        wrong_key = DashScopeProvider(base_url, "sk-" + secrets.token_hex(16))
        try:
            for call in (wrong_key.check(), wrong_key.submit(job("错的密钥"))):
                with pytest.raises(UpstreamError) as refused:
                    await call
                assert refused.value.key_rejected and refused.value.http_status == 401
        finally:
            await wrong_key.aclose()

    with_sandbox(test)


def test_a_provider_that_forgets_the_async_header_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bug of new-api #1479: the double refuses it as DashScope does, and the provider
    says the fault is ours, not the key's (no key is disabled for it)."""
    monkeypatch.setattr(dashscope, "ASYNC", {})

    async def test(base_url: str, key: str) -> None:
        provider = DashScopeProvider(base_url, key)
        try:
            with pytest.raises(UpstreamError) as refused:
                await provider.submit(job("忘了异步头"))
            error = refused.value
            assert error.http_status == 403 and not error.key_rejected and not error.transient
            assert "X-DashScope-Async" in error.message
            assert (await stats(base_url))["accepted"] == {}
        finally:
            await provider.aclose()

    with_sandbox(test)


def test_cancel_stops_a_queued_task_and_not_a_running_one() -> None:
    async def test(base_url: str, key: str) -> None:
        provider = DashScopeProvider(base_url, key)
        try:
            queued = await provider.submit(job("排队中取消"))
            canceled = await provider.cancel(queued.upstream_id)
            assert (canceled.phase, canceled.raw_status) == ("failed", "CANCELED")
            polled = await provider.poll(queued.upstream_id)
            assert polled.raw_status == "CANCELED" and polled.error == "上游任务已取消"

            running = await provider.submit(job("运行中取消 [sandbox:timeout]"))
            while (await provider.poll(running.upstream_id)).raw_status == "PENDING":
                await asyncio.sleep(0.2)
            # DashScope answers 400 UnsupportedOperation: the task runs on, as a poll shows.
            still = await provider.cancel(running.upstream_id)
            assert (still.phase, still.raw_status) == ("processing", "RUNNING")
        finally:
            await provider.aclose()

    # Queued for a tenth of the latency: 3 s, time enough to cancel.
    with_sandbox(test, latency=30.0)


class Recorded(DashScopeProvider):
    """Answers every create PENDING, keeping what would have been sent."""

    def __init__(self) -> None:
        super().__init__("https://dashscope.test", "sk-test")
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def _send(self, method: str, path: str, *, task_no: str, **kwargs: Any) -> Answer:
        kwargs.pop("logged", None)
        self.sent.append((method, path, kwargs))
        raw = b'{"output": {"task_status": "PENDING", "task_id": "t-1"}, "request_id": "r"}'
        return Answer(200, CIMultiDictProxy(CIMultiDict()), raw, False)


def test_the_create_bodies() -> None:
    async def go() -> list[tuple[str, str, dict[str, Any]]]:
        provider = Recorded()
        refs = ("https://our.test/u/a.png", "https://our.test/u/b.png")
        await provider.submit(
            job("一只猫", 2, size="1280*720", seed=7, negative_prompt="人物", watermark=False)
        )
        await provider.submit(job("改成夜景", 1, refs, strength=0.5))
        await provider.submit(job("换衣服", 1, refs, function="description_edit_with_mask"))
        await provider.submit(job("两张合一", 3, refs, imageField="images"))
        return provider.sent

    text, edit, masked, merged = asyncio.run(go())
    assert text == (
        "POST",
        dashscope.TEXT_TO_IMAGE,
        {
            "headers": {"X-DashScope-Async": "enable"},
            "json": {
                "model": "wanx2.1-t2i-turbo",
                "input": {"prompt": "一只猫", "negative_prompt": "人物"},
                "parameters": {"size": "1280*720", "seed": 7, "watermark": False, "n": 2},
            },
        },
    )
    assert edit[1] == dashscope.IMAGE_TO_IMAGE and edit[2]["headers"] == dashscope.ASYNC
    assert edit[2]["json"]["input"] == {
        "prompt": "改成夜景",
        "function": "description_edit",
        "base_image_url": "https://our.test/u/a.png",
    }
    assert edit[2]["json"]["parameters"] == {"strength": 0.5, "n": 1}
    assert masked[2]["json"]["input"]["function"] == "description_edit_with_mask"
    assert merged[2]["json"]["input"] == {
        "prompt": "两张合一",
        "images": ["https://our.test/u/a.png", "https://our.test/u/b.png"],
    }
    assert merged[2]["json"]["parameters"] == {"n": 3}


def body(status: str, **output: Any) -> dict[str, Any]:
    return {"request_id": "r", "output": {"task_id": "t", "task_status": status, **output}}


def test_every_task_answer_is_read() -> None:
    state = dashscope._state
    ok = body("SUCCEEDED", results=[{"url": "https://a/1.png"}, {"url": "https://a/2.png"}])
    ok["usage"] = {"image_count": 2}
    done = state("t", ok)
    assert done.phase == "succeeded" and done.result_urls == ("https://a/1.png", "https://a/2.png")
    assert done.usage == {"image_count": 2}
    partial = body(
        "SUCCEEDED",
        results=[
            {"url": "https://a/1.png"},
            {"code": "InternalError.Timeout", "message": "An internal timeout error"},
        ],
    )
    assert state("t", partial).result_urls == ("https://a/1.png",)
    refused_all = body(
        "SUCCEEDED",
        results=[
            {
                "code": "DataInspectionFailed",
                "message": "Output data may contain inappropriate content.",
            }
        ],
    )
    moderated = state("t", refused_all)
    assert moderated.phase == "failed"
    assert moderated.error == "内容审核未通过:上游判定生成的图片含不当内容(DataInspectionFailed)"
    with pytest.raises(UpstreamError, match="没有返回图片地址") as empty:
        state("t", body("SUCCEEDED", results=[]))
    assert empty.value.transient
    failed = state("t", body("FAILED", code="InvalidParameter", message="The size is not match"))
    assert failed.error == "图片生成失败:InvalidParameter: The size is not match"
    assert state("t", body("FAILED", code="IPInfringementSuspect")).error.startswith(
        "内容审核未通过:"
    )
    assert state("t", body("CANCELED")).error == "上游任务已取消"
    gone = state("t", body("UNKNOWN"))
    assert gone.phase == "failed" and "24 小时" in (gone.error or "")
    assert state("t", body("PENDING")).phase == "queued"
    assert state("t", body("RUNNING", task_metrics={"TOTAL": 4})).phase == "processing"
    with pytest.raises(UpstreamError, match="未知状态: SUSPENDED") as odd:
        state("t", body("SUSPENDED"))
    assert odd.value.transient
    with pytest.raises(UpstreamError, match="无法解析") as garbled:
        state("t", {"code": "InternalError"})
    assert garbled.value.transient


@pytest.mark.parametrize(
    ("status", "code", "message", "expect"),
    [
        (401, "InvalidApiKey", "Invalid API-key provided.", "key"),
        (403, "AccessDenied", "Access denied.", "key"),
        (
            400,
            "Arrearage",
            "Access denied, please make sure your account is in good standing.",
            "key",
        ),
        (403, "AccessDenied", "current user api does not support synchronous calls", "ours"),
        (429, "Throttling.RateQuota", "Requests rate limit exceeded", "transient"),
        (429, "Throttling", "Requests throttling triggered.", "transient"),
        (500, "InternalError", "An internal error has occured", "transient"),
        (404, "NotFound", "", "transient"),
        (400, "DataInspectionFailed", "Input data may contain inappropriate content.", "moderated"),
        (
            400,
            "IPInfringementSuspect",
            "Input data is suspected of being involved in IP infringement.",
            "moderated",
        ),
        (
            400,
            "InvalidParameter.DataInspection",
            "Download the media resource timed out during the data inspection process.",
            "refused",
        ),
        (400, "InvalidParameter", "Model not exist.", "refused"),
    ],
)
def test_every_error_answer_is_read(status: int, code: str, message: str, expect: str) -> None:
    error = dashscope._refusal(status, {}, {"code": code, "message": message, "request_id": "r"})
    assert error is not None and error.http_status == status
    assert error.key_rejected == (expect == "key")
    assert error.transient == (expect == "transient")
    assert error.message.startswith("内容审核未通过:") == (expect == "moderated")
    if expect == "refused":
        assert error.message == f"上游拒绝任务: {code}: {message}"
    assert dashscope._refusal(200, {}, {"output": {}}) is None
