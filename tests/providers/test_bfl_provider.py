"""The BFL provider's reading of each answer shape, where its polling URLs may take the key,
and how a task's size reaches a model sized in pixels or by ratio: no server, no database."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from shengtu.providers.base import UpstreamError, UpstreamJob
from shengtu.providers.bfl import BflProvider, _sized
from shengtu.providers.http import Answer

BASE = "https://api.bfl.ai"
JOB = "8f5a3c1e-0d7b-4c1a-9b7e-2f6d1e0a9c44"


def answer(status: int, body: Any, **headers: str) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Answer(status, CIMultiDictProxy(CIMultiDict(headers)), raw, False)


def read(provider: BflProvider, got: Answer, **flags: bool) -> Any:
    return asyncio.run(provider._json(got, **flags))


def refusal(got: Answer, **flags: bool) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        read(BflProvider(BASE, "k"), got, **flags)
    return caught.value


def test_each_status_of_a_result_means_what_bfl_says() -> None:
    state = BflProvider(BASE, "k").state
    ready = state(JOB, {"id": JOB, "status": "Ready", "result": {"sample": "https://d/x.jpg"}})
    assert (ready.phase, ready.result_urls, ready.progress) == (
        "succeeded",
        ("https://d/x.jpg",),
        100,
    )
    assert state(JOB, {"status": "Ready", "result": {"sample": "u"}, "cost": 4}).usage == {
        "cost": 4
    }
    assert state(JOB, {"status": "Pending", "progress": 0.42}).progress == 42
    assert state(JOB, {"status": "Pending", "progress": 37}).progress == 37
    pending = state(JOB, {"status": "Pending", "progress": None})
    assert (pending.phase, pending.progress) == ("processing", None)
    moderated = {"Moderation Reasons": ["Derivative Works"]}
    asked = state(JOB, {"status": "Request Moderated", "details": moderated})
    made = state(JOB, {"status": "Content Moderated", "details": None})
    for refused in (asked, made):
        assert refused.phase == "failed" and refused.error is not None
        assert refused.error.startswith("内容审核未通过:")
    assert "Derivative Works" in (asked.error or "") and "请求" in (asked.error or "")
    assert "生成的图片" in (made.error or "")
    for status in ("Error", "Failed"):
        failed = state(JOB, {"status": status, "details": {"error": "GPU fell over"}})
        assert failed.phase == "failed" and failed.error == "图片生成失败:GPU fell over"
        assert not (failed.error or "").startswith("内容审核")
    lost = state(JOB, {"status": "Task not found"})
    assert lost.phase == "failed" and "Task not found" in (lost.error or "")
    for spoiled in ({"status": "Thinking"}, {"status": "Ready", "result": None}):
        with pytest.raises(UpstreamError) as caught:
            state(JOB, spoiled)
        assert caught.value.transient and not caught.value.uncertain


def test_each_refusal_is_certain_or_not_as_its_status_says() -> None:
    broke = refusal(answer(402, {"detail": "Insufficient credits"}))
    assert broke.key_rejected and not broke.transient and broke.message == "上游账户余额不足"
    for status in (401, 403):
        wrong = refusal(answer(status, {"detail": "Not authenticated - Invalid Authentication"}))
        assert wrong.key_rejected and "鉴权失败" in wrong.message
    busy = refusal(answer(429, {"detail": "too many active tasks"}, **{"Retry-After": "3"}))
    assert busy.transient and busy.retry_after == 3.0 and not busy.uncertain
    assert busy.message.startswith("上游限流(HTTP 429)") and "active tasks" in busy.message
    invalid = {"detail": [{"loc": ["body", "width"], "msg": "must be a multiple of 32"}]}
    bad = refusal(answer(422, invalid), creates=True)
    assert (
        not bad.transient and not bad.uncertain and "width: must be a multiple of 32" in bad.message
    )
    for status in (404, 500, 503):
        down = refusal(answer(status, b"oops"), creates=True)
        assert down.transient and not down.uncertain and not down.key_rejected
    # A 2xx that cannot be read may hide a job made and paid for; a poll's can be asked again.
    made = refusal(answer(200, b"<html>"), creates=True)
    assert made.uncertain
    polled = refusal(answer(200, b"{"), polled=True)
    assert polled.transient and not polled.uncertain
    # A 404 that names the job's status is that status.
    gone = read(BflProvider(BASE, "k"), answer(404, {"status": "Task not found"}), polled=True)
    assert gone["status"] == "Task not found"


@pytest.mark.parametrize(
    ("base", "polling_url", "kept"),
    [
        (BASE, f"https://api.us1.bfl.ai/v1/get_result?id={JOB}", True),
        (BASE, f"https://api.eu.bfl.ai/v1/get_result?id={JOB}", True),
        ("https://api.bfl.ml", f"https://api.us1.bfl.ml/v1/get_result?id={JOB}", True),
        (BASE, f"{BASE}/v1/get_result?id={JOB}", False),  # the one the base URL gives
        (BASE, f"https://evil.example/v1/get_result?id={JOB}", False),
        (BASE, f"https://api.bfl.ai.evil.example/v1/get_result?id={JOB}", False),
        (BASE, f"https://evilbfl.ai/v1/get_result?id={JOB}", False),
        (BASE, f"http://api.us1.bfl.ai/v1/get_result?id={JOB}", False),
        (BASE, f"https://api.us1.bfl.ai:8443/v1/get_result?id={JOB}", False),
        (BASE, f"https://me:pw@api.us1.bfl.ai/v1/get_result?id={JOB}", False),
        (BASE, f"https://169.254.169.254/v1/get_result?id={JOB}", False),
        (BASE, f"https://api.us1.bfl.ai/{'x' * 120}?id={JOB}", False),  # beyond the column
        # A relay's own origin is followed; BFL's regional hosts are not its.
        ("https://relay.example", f"https://relay.example/q?id={JOB}", True),
        ("https://relay.example", f"https://api.us1.bfl.ai/v1/get_result?id={JOB}", False),
        ("http://127.0.0.1:9/bfl", f"http://127.0.0.1:9/bfl/v1/get_result?id={JOB}", False),
        ("http://127.0.0.1:9/bfl", f"http://127.0.0.1:10/bfl/v1/get_result?id={JOB}", False),
    ],
)
def test_a_polling_url_is_kept_only_where_the_key_may_go(
    base: str, polling_url: str, kept: bool
) -> None:
    upstream_id = BflProvider(base, "k")._upstream_id(JOB, polling_url, "T1")
    assert upstream_id == (f"{JOB}|{polling_url}" if kept else JOB)
    assert len(upstream_id) <= 128


def test_a_poll_goes_where_the_kept_polling_url_says(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, str, Any]] = []

    async def fake_send(self: BflProvider, method: str, path: str, **kwargs: Any) -> Answer:
        sent.append((self.base_url, path, kwargs.get("params")))
        return answer(200, {"id": JOB, "status": "Pending"})

    monkeypatch.setattr(BflProvider, "_send", fake_send)
    provider = BflProvider(BASE, "k")
    regional = f"https://api.us1.bfl.ai/v1/get_result?id={JOB}"

    async def go() -> None:
        await provider.poll(JOB, "T1")
        await provider.poll(f"{JOB}|{regional}", "T1")
        await provider.poll(f"{JOB}|{regional}", "T1")
        # A column changed by hand to point elsewhere: the key does not follow it.
        await provider.poll(f"{JOB}|https://evil.example/steal?id={JOB}", "T1")
        await provider.aclose()

    asyncio.run(go())
    assert sent == [
        (BASE, "/v1/get_result", {"id": JOB}),
        ("https://api.us1.bfl.ai", f"/v1/get_result?id={JOB}", None),
        ("https://api.us1.bfl.ai", f"/v1/get_result?id={JOB}", None),
        (BASE, "/v1/get_result", {"id": JOB}),
    ]
    assert len(provider._regions) == 1  # one session for the region, reused


def test_the_key_goes_in_x_key_and_nowhere_else() -> None:
    async def go() -> None:
        provider = BflProvider(BASE, "bfl_secret")
        try:
            headers = provider._client().headers
            assert headers["x-key"] == "bfl_secret"
            assert "Authorization" not in headers
        finally:
            await provider.aclose()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("model", "given", "sent"),
    [
        ("flux-pro-1.1", {"aspect_ratio": "16:9"}, {"width": 1344, "height": 768}),
        ("flux-pro-1.1", {"aspect_ratio": "1:1"}, {"width": 1024, "height": 1024}),
        ("flux-dev", {"size": "832x1216"}, {"width": 832, "height": 1216}),
        # The channel's own pixels win over the task's ratio.
        ("flux-pro-1.1", {"aspect_ratio": "16:9", "width": 1440}, {"width": 1440, "height": 768}),
        (
            "flux-pro-1.1-ultra",
            {"aspect_ratio": "21:9", "raw": True},
            {"aspect_ratio": "21:9", "raw": True},
        ),
        ("flux-kontext-pro", {"aspect_ratio": "3:4"}, {"aspect_ratio": "3:4"}),
        ("flux-kontext-max", {"size": "1344x768"}, {"aspect_ratio": "7:4"}),
        ("flux-pro-1.1", {}, {}),
    ],
)
def test_a_size_reaches_the_model_in_the_fields_it_takes(
    model: str, given: dict[str, Any], sent: dict[str, Any]
) -> None:
    payload = dict(given)
    _sized(payload, model)
    assert payload == sent


def test_an_unlisted_ratio_is_brought_to_sides_flux_takes_and_a_wrong_one_refused() -> None:
    payload: dict[str, Any] = {"aspect_ratio": "5:4"}
    _sized(payload, "flux-pro-1.1")
    width, height = payload["width"], payload["height"]
    assert width % 32 == 0 and height % 32 == 0 and 256 <= height < width <= 1440
    assert abs(width / height - 1.25) < 0.05
    with pytest.raises(UpstreamError) as caught:
        _sized({"aspect_ratio": "wide"}, "flux-pro-1.1")
    assert not caught.value.transient


def test_a_submit_sends_the_references_and_keeps_the_polling_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    regional = f"https://api.eu1.bfl.ai/v1/get_result?id={JOB}"

    async def fake_send(self: BflProvider, method: str, path: str, **kwargs: Any) -> Answer:
        sent.append((path, kwargs["json"]))
        return answer(200, {"id": JOB, "polling_url": regional, "cost": 4})

    monkeypatch.setattr(BflProvider, "_send", fake_send)
    job = UpstreamJob(
        task_no="T1",
        upstream_model="flux-kontext-pro",
        params={"aspect_ratio": "1:1", "seed": 7},
        prompt="加上雪",
        image_urls=["https://us/a.png", "https://us/b.png"],
        count=3,
    )
    state = asyncio.run(BflProvider(BASE, "k").submit(job))
    assert sent == [
        (
            "/v1/flux-kontext-pro",
            {
                "prompt": "加上雪",
                "aspect_ratio": "1:1",
                "seed": 7,
                "input_image": "https://us/a.png",
                "input_image_2": "https://us/b.png",
            },
        )
    ]
    assert (state.upstream_id, state.phase, state.usage) == (
        f"{JOB}|{regional}",
        "queued",
        {"cost": 4},
    )
