"""即梦 (Volcengine visual) in this process: the request signing against the official SDK's,
the double's check of a signature (a tampered body, a wrong secret, an unknown access key,
a stale signing time), the provider over real HTTP against the double, and its reading of
every answer shape."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from shengtu.catalog.demo import DEMO_MODELS
from shengtu.config import Settings
from shengtu.pricing.parameters import Parameters
from shengtu.providers.base import UpstreamError, UpstreamJob
from shengtu.providers.jimeng import (
    MALFORMED_KEY,
    JimengProvider,
    business_error,
    gateway_error,
    parse_upstream_id,
    result_state,
    sign,
    split_key,
    submit_body,
)
from shengtu.providers.registry import PROTOCOLS, build_providers, sandbox_key
from shengtu.providers.sandbox import SandboxState
from shengtu.providers.sandbox.jimeng import JimengDouble
from shengtu.runner import running_sandbox
from shengtu.storage.images import sniff_image
from tests.support import SANDBOX_SCALE, png

# A request the official Volcengine SDK for Python (volcengine 1.0.x, SignerV4) signed, with
# its clock at SIGNED_AT: the headers it sent, for two hosts and paths.
SDK_ACCESS_KEY = "AKLTexampleaccesskey"
SDK_SECRET_KEY = "c2VjcmV0LWtleS1leGFtcGxl=="
SDK_BODY = '{"req_key": "jimeng_t2i_v31", "prompt": "一只猫"}'.encode()
SDK_BODY_SHA256 = "ed7dfe2e3e2ef3b8d497e682e5d075ac4e34199442141fb561e65879469a15bd"
SIGNED_AT = datetime(2025, 7, 18, 9, 30, 15, tzinfo=UTC)
SDK_SIGNATURES = {
    ("visual.volcengineapi.com", "/"): (
        "7014304485245689560bcc51bbc0e09bbc5e20975fa125c6e251c1494c8f5cbb"
    ),
    ("127.0.0.1:8123", "/jimeng/"): (
        "82a9a16a63b5088ef0b109dbf7144bfa539d87fe3714a9449d4d06a96a2bc220"
    ),
}
SUBMIT_QUERY = {"Action": "CVSync2AsyncSubmitTask", "Version": "2022-08-31"}
LATENCY = 0.05


@pytest.mark.parametrize(("host", "path"), list(SDK_SIGNATURES))
def test_requests_are_signed_as_the_official_sdk_signs_them(host: str, path: str) -> None:
    headers = sign(
        method="POST",
        host=host,
        path=path,
        query=SUBMIT_QUERY,
        body=SDK_BODY,
        access_key=SDK_ACCESS_KEY,
        secret_key=SDK_SECRET_KEY,
        now=SIGNED_AT,
    )
    assert headers == {
        "Content-Type": "application/json",
        "Host": host,
        "X-Content-Sha256": SDK_BODY_SHA256,
        "X-Date": "20250718T093015Z",
        "Authorization": (
            "HMAC-SHA256 Credential=AKLTexampleaccesskey/20250718/cn-north-1/cv/request, "
            "SignedHeaders=content-type;host;x-content-sha256;x-date, "
            f"Signature={SDK_SIGNATURES[(host, path)]}"
        ),
    }


def sandbox_client(key: str, clock: float | None = None) -> tuple[TestClient, SandboxState]:
    """The jimeng double where the sandbox mounts it, with the gateway's clock at ``clock``."""
    state = SandboxState(key, latency=0.0, scale=SANDBOX_SCALE)
    double = JimengDouble(state)
    if clock is not None:
        double.clock = lambda: clock
    app = Starlette(routes=[Mount(double.prefix, routes=double.routes())])
    return TestClient(app, base_url="http://testserver"), state


def test_the_double_takes_a_request_the_official_sdk_signed() -> None:
    client, state = sandbox_client(
        f"{SDK_ACCESS_KEY}:{SDK_SECRET_KEY}", clock=SIGNED_AT.timestamp() + 60
    )
    headers = {
        "Host": "127.0.0.1:8123",
        "Content-Type": "application/json",
        "X-Date": "20250718T093015Z",
        "X-Content-Sha256": SDK_BODY_SHA256,
        "Authorization": (
            "HMAC-SHA256 Credential=AKLTexampleaccesskey/20250718/cn-north-1/cv/request, "
            "SignedHeaders=content-type;host;x-content-sha256;x-date, "
            f"Signature={SDK_SIGNATURES[('127.0.0.1:8123', '/jimeng/')]}"
        ),
    }
    url = "/jimeng/?Action=CVSync2AsyncSubmitTask&Version=2022-08-31"
    answer = client.post(url, content=SDK_BODY, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["code"] == 10000 and answer.json()["data"]["task_id"]
    assert state.accepted == {"一只猫": 1}
    # One byte of the body changed after signing: refused, and no job made.
    tampered = client.post(
        url, content=SDK_BODY.replace("猫".encode(), "狗".encode()), headers=headers
    )
    assert tampered.status_code == 401
    error = tampered.json()["ResponseMetadata"]["Error"]
    assert error["Code"] == "SignatureDoesNotMatch" and error["CodeN"] == 100010
    assert state.accepted == {"一只猫": 1}


def signed_post(
    client: TestClient,
    access_key: str,
    secret_key: str,
    payload: dict[str, Any],
    *,
    action: str = "CVSync2AsyncSubmitTask",
    now: datetime | None = None,
    body: bytes | None = None,
) -> Any:
    sent = json.dumps(payload, ensure_ascii=False).encode()
    query = {"Action": action, "Version": "2022-08-31"}
    headers = sign(
        method="POST",
        host="testserver",
        path="/jimeng/",
        query=query,
        body=sent,
        access_key=access_key,
        secret_key=secret_key,
        now=now or datetime.now(UTC),
    )
    return client.post(
        "/jimeng/", params=query, content=sent if body is None else body, headers=headers
    )


def test_the_double_refuses_what_the_gateway_refuses() -> None:
    access, secret = "AKLT" + secrets.token_hex(8), secrets.token_urlsafe(24)
    client, state = sandbox_client(f"{access}:{secret}")
    ask = {"req_key": "jimeng_t2i_v31", "prompt": "山水"}

    def refusal(answer: Any) -> tuple[int, str]:
        return answer.status_code, answer.json()["ResponseMetadata"]["Error"]["Code"]

    assert signed_post(client, access, secret, ask).json()["code"] == 10000
    assert refusal(signed_post(client, access, secret + "x", ask)) == (401, "SignatureDoesNotMatch")
    assert refusal(signed_post(client, "AKLTnobody", secret, ask)) == (401, "InvalidAccessKey")
    changed = json.dumps({**ask, "prompt": "山水画"}, ensure_ascii=False).encode()
    assert refusal(signed_post(client, access, secret, ask, body=changed)) == (
        401,
        "SignatureDoesNotMatch",
    )
    stale = datetime(2020, 1, 1, tzinfo=UTC)
    assert refusal(signed_post(client, access, secret, ask, now=stale)) == (400, "InvalidTimestamp")
    unsigned = client.post("/jimeng/", params=SUBMIT_QUERY, json=ask)
    assert refusal(unsigned) == (401, "MissingAuthenticationToken")
    # The query is signed too: another Action than the one signed is refused.
    headers = sign(
        method="POST",
        host="testserver",
        path="/jimeng/",
        query=SUBMIT_QUERY,
        body=b"{}",
        access_key=access,
        secret_key=secret,
        now=datetime.now(UTC),
    )
    moved = client.post(
        "/jimeng/",
        params={"Action": "CVSync2AsyncGetResult", "Version": "2022-08-31"},
        content=b"{}",
        headers=headers,
    )
    assert refusal(moved) == (401, "SignatureDoesNotMatch")
    assert state.accepted == {"山水": 1}


def test_the_sandbox_key_alone_signs_the_demo() -> None:
    """``make run``'s sandbox has one plain key: the jimeng provider of the embedded
    default signs with it as both halves, and the double takes that."""
    client, _ = sandbox_client("sbx-plain")
    assert PROTOCOLS["jimeng"].sandbox_key("sbx-plain") == "sbx-plain:sbx-plain"
    assert PROTOCOLS["jimeng"].sandbox_key("AK:SK") == "AK:SK"
    assert PROTOCOLS["replicate"].sandbox_key("sbx-plain") == "sbx-plain"
    ask = {"req_key": "jimeng_t2i_v31", "prompt": "演示"}
    assert signed_post(client, "sbx-plain", "sbx-plain", ask).json()["code"] == 10000


def with_sandbox(test: Callable[[str, str], Awaitable[None]]) -> None:
    """Runs ``test(base URL of the jimeng double, key)`` against a sandbox in this process."""

    async def run() -> None:
        key = f"AKLT{secrets.token_hex(8)}:{secrets.token_urlsafe(24)}"
        async with running_sandbox("127.0.0.1", 0, key, LATENCY, scale=SANDBOX_SCALE) as end:
            await test(end.base_url + PROTOCOLS["jimeng"].sandbox_path, key)

    asyncio.run(run())


def job(prompt: str, model: str = "jimeng_t2i_v31", **params: Any) -> UpstreamJob:
    return UpstreamJob(
        task_no="TASK-" + secrets.token_hex(4),
        upstream_model=model,
        params=params,
        prompt=prompt,
    )


async def finished(provider: JimengProvider, upstream_id: str) -> Any:
    for _ in range(100):
        state = await provider.poll(upstream_id)
        if state.phase not in ("queued", "processing"):
            return state
        await asyncio.sleep(LATENCY / 2)
    raise AssertionError("the job did not finish")


def test_a_job_over_http_inline_or_by_url() -> None:
    async def test(base_url: str, key: str) -> None:
        provider = JimengProvider(base_url, key)
        try:
            await provider.check()
            state = await provider.submit(job("一座桥", size="1664x936"))
            assert state.phase == "queued"
            req_key, task_id, by_url = parse_upstream_id(state.upstream_id)
            assert (req_key, by_url) == ("jimeng_t2i_v31", False) and task_id
            done = await finished(provider, state.upstream_id)
            assert done.phase == "succeeded" and done.result_urls == ()
            assert len(done.pictures) == 1 and done.usage == {"image_count": 1}
            picture = sniff_image(done.pictures[0])
            assert picture.ext == "png" and picture.width > picture.height  # 16:9
            linked = await provider.submit(job("一座塔", return_url=True))
            assert parse_upstream_id(linked.upstream_id)[2] is True
            done = await finished(provider, linked.upstream_id)
            assert done.pictures == () and len(done.result_urls) == 1
            assert done.result_urls[0].endswith(".png") and "/results/" in done.result_urls[0]
            refused = await finished(
                provider, (await provider.submit(job("违规 [sandbox:fail]"))).upstream_id
            )
            assert refused.phase == "failed" and refused.error.startswith("内容审核未通过:")
            gone = await provider.poll("jimeng_t2i_v31:7392616336519610409")
            assert gone.phase == "failed" and "不存在或已过期" in (gone.error or "")
        finally:
            await provider.aclose()

        access, _, secret = key.partition(":")
        for wrong in (f"{access}:{secret}x", f"AKLTnobody:{secret}"):
            bad = JimengProvider(base_url, wrong)
            try:
                with pytest.raises(UpstreamError) as raised:
                    await bad.check()
                assert raised.value.key_rejected and raised.value.http_status == 401
                with pytest.raises(UpstreamError) as raised:
                    await bad.submit(job("不该生成"))
                assert raised.value.key_rejected and not raised.value.uncertain
            finally:
                await bad.aclose()

    with_sandbox(test)


@pytest.mark.parametrize("key", ["", "AKLTonly", ":secret", "AKLT:", "AK LT:secret", "AK:se cret"])
def test_a_malformed_key_is_refused_before_anything_is_sent(key: str) -> None:
    assert split_key(key) is None
    # Nothing listens there: a request sent would fail otherwise.
    provider = JimengProvider("http://127.0.0.1:9", key)

    async def check() -> None:
        try:
            with pytest.raises(UpstreamError) as raised:
                await provider.check()
            assert raised.value.message == MALFORMED_KEY and raised.value.key_rejected
        finally:
            await provider.aclose()

    asyncio.run(check())
    assert split_key("AKLTabc:c2Vj+cmV0/==") == ("AKLTabc", "c2Vj+cmV0/==")


def test_the_submit_body() -> None:
    body, by_url = submit_body(
        UpstreamJob(
            task_no="T",
            upstream_model="jimeng_i2i_v30",
            params={"size": "1472x1104", "seed": 7, "return_url": True, "scale": 0.5},
            prompt="换成雪景",
            image_urls=["https://example.com/a.png"],
            count=3,
        )
    )
    assert by_url is True
    assert body == {
        "req_key": "jimeng_i2i_v30",
        "prompt": "换成雪景",
        "width": 1472,
        "height": 1104,
        "seed": 7,
        "scale": 0.5,
        "image_urls": ["https://example.com/a.png"],
    }
    # 4.0's size is an area, a number: sent as it is.
    body, by_url = submit_body(job("组图", "jimeng_t2i_v40", size=4194304, force_single=True))
    assert body == {
        "req_key": "jimeng_t2i_v40",
        "prompt": "组图",
        "size": 4194304,
        "force_single": True,
    }
    assert by_url is False
    with pytest.raises(UpstreamError) as raised:
        submit_body(job("x", size="1:1"))
    assert not raised.value.transient


def answer(code: int, data: Any = None, message: str = "Success") -> dict[str, Any]:
    return {
        "code": code,
        "data": data,
        "message": message,
        "request_id": "2025071809301512345",
        "status": code,
        "time_elapsed": "10ms",
    }


def test_every_result_shape() -> None:
    uid = "jimeng_t2i_v31:7392616336519610409"
    picture = png()
    inline = base64.b64encode(picture).decode()
    queued = result_state(uid, 200, answer(10000, {"status": "in_queue", "image_urls": None}))
    assert queued.phase == "queued"
    assert result_state(uid, 200, answer(10000, {"status": "generating"})).phase == "processing"
    done = result_state(
        uid, 200, answer(10000, {"status": "done", "binary_data_base64": [inline, inline]})
    )
    assert done.phase == "succeeded" and done.pictures == (picture, picture)
    assert done.usage == {"image_count": 2} and done.result_urls == ()
    urls = ["https://p.volccdn.com/a.png", "https://p.volccdn.com/b.png"]
    linked = result_state(uid, 200, answer(10000, {"status": "done", "image_urls": urls}))
    assert linked.result_urls == tuple(urls) and linked.pictures == ()
    for status, words in (("not_found", "12 小时"), ("expired", "已过期")):
        gone = result_state(uid, 200, answer(10000, {"status": status}))
        assert gone.phase == "failed" and words in (gone.error or "")
    empty = result_state(uid, 200, answer(10000, {"status": "done", "image_urls": []}))
    assert empty.phase == "failed"
    for code in (50411, 50412, 50413, 50511, 50512, 50518, 50519):
        refused = result_state(uid, 400, answer(code, message="Post Img Risk Not Pass"))
        assert refused.phase == "failed" and (refused.error or "").startswith("内容审核未通过:")
    bad_request = result_state(uid, 400, answer(50200, message="Request Invalid Args"))
    assert bad_request.phase == "failed" and "50200" in (bad_request.error or "")
    for code, status in ((50429, 429), (50430, 429), (50500, 500), (50501, 500)):
        with pytest.raises(UpstreamError) as raised:
            result_state(uid, status, answer(code, message="x"))
        assert raised.value.transient and not raised.value.uncertain
    with pytest.raises(UpstreamError) as raised:
        result_state(uid, 200, answer(10000, {"status": "running"}))
    assert raised.value.transient and "未知状态" in raised.value.message
    with pytest.raises(UpstreamError) as raised:
        result_state(uid, 200, answer(10000, {"status": "done", "binary_data_base64": ["@@"]}))
    assert not raised.value.transient


def test_every_refusal_at_submit() -> None:
    for code in (50411, 50412, 50413):
        refused = business_error(code, answer(code, message="Text Risk Not Pass"), 400)
        assert refused.message.startswith("内容审核未通过:") and not refused.transient
    limited = business_error(50429, answer(50429), 429)
    assert limited.transient and "50429" in limited.message
    account = business_error(50400, answer(50400, message="Access Denied: Internal Error"), 401)
    assert account.key_rejected and not account.transient
    bad = business_error(50200, answer(50200, message="Request Invalid Args"), 400)
    assert not bad.transient and not bad.key_rejected and "50200" in bad.message

    def metadata(code: str) -> dict[str, Any]:
        return {"ResponseMetadata": {"RequestId": "r", "Error": {"CodeN": 1, "Code": code}}}

    for code in ("SignatureDoesNotMatch", "InvalidAccessKey", "MissingAuthenticationToken"):
        failure = gateway_error(metadata(code), 401, {})
        assert failure is not None and failure.key_rejected and code in failure.message
    skewed = gateway_error(metadata("InvalidTimestamp"), 400, {})
    assert skewed is not None and skewed.transient and not skewed.key_rejected
    unknown = gateway_error(metadata("InvalidActionOrVersion"), 404, {})
    assert unknown is not None and unknown.transient and not unknown.key_rejected
    assert gateway_error(None, 502, {}) is not None
    assert gateway_error(None, 200, {}) is None


def test_the_demo_model_is_served_by_the_sandbox_of_make_run(tmp_path: Path) -> None:
    """``make run``'s jimeng-t2i: its size choice goes upstream as width and height, through
    the provider the embedded default builds for the sandbox (one plain key)."""
    demo = next(m for m in DEMO_MODELS if m["model_name"] == "jimeng-t2i")
    assert (demo["provider"], demo["upstream_model"]) == ("jimeng", "jimeng_t2i_v31")
    parameters = Parameters.parse(demo["params"])
    assert parameters.max_n == 1
    chosen = parameters.choose("jimeng-t2i", {"size": "936x1664"}, 1)
    fields = {**demo["upstream_params"], **parameters.upstream_fields(chosen)}
    settings = Settings(data_dir=tmp_path)

    async def run() -> None:
        key = sandbox_key(settings)
        async with running_sandbox("127.0.0.1", 0, key, LATENCY, scale=SANDBOX_SCALE) as end:
            provider = build_providers(settings, end)["jimeng"]
            assert isinstance(provider, JimengProvider)
            try:
                state = await provider.submit(job("竖屏海报", demo["upstream_model"], **fields))
                done = await finished(provider, state.upstream_id)
                picture = sniff_image(done.pictures[0])
                assert picture.height > picture.width  # 9:16
            finally:
                await provider.aclose()

    asyncio.run(run())
