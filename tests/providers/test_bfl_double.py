"""The BFL provider against the sandbox's BFL double, served in this process: the key in
``x-key`` (a wrong one refused as BFL refuses it), a key out of credits, the 24 active tasks
of a key, a job to its picture, both moderation outcomes, and each poll fault as the
provider reads it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.bfl import BflProvider
from shengtu.providers.sandbox.bfl import ACTIVE_TASKS
from shengtu.runner import running_sandbox
from shengtu.storage.images import sniff_image
from tests.support import SANDBOX_SCALE

GOOD, POOR = "bfl_" + secrets.token_hex(8), "bfl_nocredit_" + secrets.token_hex(8)


def with_sandbox(test: Callable[[str], Awaitable[None]], latency: float = 0.05) -> None:
    """Runs ``test(base URL of the double)`` against a sandbox served in this process."""

    async def run() -> None:
        keys = f"{GOOD},{POOR}"
        async with running_sandbox("127.0.0.1", 0, keys, latency, scale=SANDBOX_SCALE) as end:
            await test(end.base_url + "/bfl")

    asyncio.run(run())


def job(prompt: str, model: str = "flux-pro-1.1", **params: Any) -> UpstreamJob:
    return UpstreamJob(
        task_no="TASK-" + secrets.token_hex(4),
        upstream_model=model,
        params=params,
        prompt=prompt,
    )


async def finished(provider: BflProvider, upstream_id: str, polls: int = 40) -> UpstreamState:
    for _ in range(polls):
        state = await provider.poll(upstream_id, "T")
        if state.phase in ("succeeded", "failed"):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"{upstream_id} still {state.raw_status}")


async def refused(call: Awaitable[Any]) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await call
    return caught.value


def test_a_job_goes_from_create_to_its_picture_through_the_polling_url() -> None:
    async def test(base: str) -> None:
        provider = BflProvider(base, GOOD, rps=1000)
        try:
            await provider.check()
            state = await provider.submit(job("一片森林", aspect_ratio="16:9", seed=3))
            # The double's polling URL is the one the base URL gives: the id alone is kept.
            assert "|" not in state.upstream_id and state.phase == "queued"
            assert state.usage == {"cost": 4}
            pending = await provider.poll(state.upstream_id, "T")
            assert pending.phase in ("processing", "succeeded")
            done = await finished(provider, state.upstream_id)
            assert done.phase == "succeeded" and len(done.result_urls) == 1
            async with httpx.AsyncClient() as client:
                picture = (await client.get(done.result_urls[0])).content
            info = sniff_image(picture)
            assert info.ext == "png" and info.width > info.height  # 1344×768 asked
            edit = await provider.submit(
                UpstreamJob("T2", "flux-kontext-pro", {}, "加上雪", ["https://x/ref.png"])
            )
            assert (await finished(provider, edit.upstream_id)).phase == "succeeded"
            async with httpx.AsyncClient() as client:
                stats = (await client.get(base.removesuffix("/bfl") + "/stats")).json()
            assert stats["references"]["加上雪"] == [len("https://x/ref.png")]
            assert stats["accepted"]["一片森林"] == 1
        finally:
            await provider.aclose()

    with_sandbox(test)


def test_a_wrong_key_is_refused_and_a_key_out_of_credits_is_told() -> None:
    async def test(base: str) -> None:
        wrong, poor = BflProvider(base, "bfl_wrong", rps=1000), BflProvider(base, POOR, rps=1000)
        try:
            for call in (wrong.check(), wrong.submit(job("猫")), wrong.poll("x", "T")):
                exc = await refused(call)
                assert exc.key_rejected and exc.http_status == 403 and "鉴权失败" in exc.message
            for call in (poor.check(), poor.submit(job("猫"))):
                exc = await refused(call)
                assert exc.key_rejected and not exc.transient and exc.message == "上游账户余额不足"
        finally:
            await wrong.aclose()
            await poor.aclose()

    with_sandbox(test)


def test_moderation_outcomes_and_poll_faults_read_as_their_own_reasons() -> None:
    async def test(base: str) -> None:
        provider = BflProvider(base, GOOD, rps=1000)
        try:
            asked = await provider.submit(job("违规请求 [sandbox:moderated]"))
            made = await provider.submit(job("违规图片 [sandbox:fail]"))
            request_moderated = await finished(provider, asked.upstream_id)
            content_moderated = await finished(provider, made.upstream_id)
            assert request_moderated.raw_status == "Request Moderated"
            assert content_moderated.raw_status == "Content Moderated"
            for state in (request_moderated, content_moderated):
                assert state.phase == "failed" and (state.error or "").startswith("内容审核未通过:")
            lost = await provider.poll("image_nope", "T")
            assert lost.phase == "failed" and lost.raw_status == "Task not found"
            for word, words in (
                ("garbage", "无法解析"),
                ("status7", "未知状态"),
                ("poll429", "HTTP 429"),
            ):
                state = await provider.submit(job(f"查询 [sandbox:{word}]"))
                exc = await refused(provider.poll(state.upstream_id, "T"))
                assert exc.transient and not exc.uncertain and words in exc.message, word
            exc = await refused(provider.submit(job("故障 [sandbox:error500]")))
            assert exc.transient and not exc.uncertain and exc.http_status == 500
            exc = await refused(provider.submit(job("限流 [sandbox:submit429]")))
            assert exc.http_status == 429 and exc.retry_after == 1.0
            assert (await provider.submit(job("限流 [sandbox:submit429]"))).phase == "queued"
            exc = await refused(provider.submit(job("尺寸", width=1000, height=768)))
            assert not exc.transient and "multiple of 32" in exc.message
            exc = await refused(provider.submit(job("模型", "flux-nope")))
            assert exc.transient and exc.http_status == 404
        finally:
            await provider.aclose()

    with_sandbox(test)


def test_a_key_holds_24_active_tasks_and_the_next_is_refused_until_one_ends() -> None:
    async def test(base: str) -> None:
        provider = BflProvider(base, GOOD, rps=1000)
        try:
            made = [await provider.submit(job(f"第{i}张")) for i in range(ACTIVE_TASKS)]
            exc = await refused(provider.submit(job("第25张")))
            assert exc.http_status == 429 and exc.transient and not exc.key_rejected
            assert "24 active tasks" in exc.message
            await finished(provider, made[0].upstream_id, polls=100)
            assert (await provider.submit(job("第25张"))).phase == "queued"
        finally:
            await provider.aclose()

    assert ACTIVE_TASKS == 24
    with_sandbox(test, latency=1.5)
