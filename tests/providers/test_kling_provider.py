"""The 可灵 (Kling) provider against its double served in this process, over real HTTP: the
JWT it mints is checked by the double for real, renewed before it expires (a short lifetime
here), renewed once more when Kling says it expired; a wrong secret, a foreign ``iss`` or a
key without both halves is refused. And the provider's reading of every answer shape."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from multidict import CIMultiDict, CIMultiDictProxy
from starlette.applications import Starlette
from starlette.routing import Mount

from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.http import Answer
from shengtu.providers.kling import KEY_FORMAT, KlingProvider, mint_token, refusal, task_state
from shengtu.providers.sandbox.common import SandboxState, Shared
from shengtu.providers.sandbox.kling import RISK_CONTROL, KlingDouble
from shengtu.runner import bind
from shengtu.storage.images import sniff_image
from tests.support import SANDBOX_SCALE

LATENCY = 0.05
ACCESS = "AK" + secrets.token_hex(15)
SECRET = "SK" + secrets.token_hex(15)
KEY = f"{ACCESS}:{SECRET}"


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def served(keys: str = KEY) -> AsyncIterator[tuple[str, KlingDouble]]:
    """The Kling double (and the shared results route) on a port of its own: (its base
    URL, as a channel's, and the double, whose tokens and refusals the tests read)."""
    state = SandboxState(keys, LATENCY, scale=SANDBOX_SCALE)
    double = KlingDouble(state)
    app = Starlette(routes=[Mount(double.prefix, routes=double.routes()), *Shared(state).routes()])
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), task
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}{double.prefix}", double
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)


def against_double(test: Callable[[str, KlingDouble], Awaitable[None]]) -> None:
    async def run() -> None:
        async with served() as (base_url, double):
            await test(base_url, double)

    asyncio.run(run())


def job(prompt: str, count: int = 1, model: str = "kling-v1-5", **params: Any) -> UpstreamJob:
    return UpstreamJob(
        task_no="TASK-" + secrets.token_hex(4),
        upstream_model=model,
        params={"aspect_ratio": "1:1", **params},
        prompt=prompt,
        count=count,
    )


async def finished(provider: KlingProvider, state: UpstreamState) -> UpstreamState:
    for _ in range(200):
        if state.phase in ("succeeded", "failed"):
            return state
        await asyncio.sleep(LATENCY / 2)
        state = await provider.poll(state.upstream_id)
    raise AssertionError(f"task not done: {state}")


def test_tasks_of_several_pictures_and_a_reference_through_the_double() -> None:
    async def test(base_url: str, double: KlingDouble) -> None:
        provider = KlingProvider(base_url, KEY)
        try:
            await provider.check()
            submitted = await provider.submit(job("三只猫", 3))
            assert submitted.phase == "queued" and submitted.raw_status == "submitted"
            done = await finished(provider, submitted)
            assert done.phase == "succeeded" and len(set(done.result_urls)) == 3
            assert done.usage == {"final_unit_deduction": "3"}
            async with httpx.AsyncClient() as client:
                pictures = [(await client.get(url)).content for url in done.result_urls]
            assert len(set(pictures)) == 3
            assert all(sniff_image(p).ext == "png" for p in pictures)

            fewer = await finished(
                provider, await provider.submit(job("少一张 [sandbox:fewer]", 4))
            )
            assert len(fewer.result_urls) == 3

            # A reference: its URL as ``image``, with the reference fields the channel set.
            reference = "https://files.example.com/ref.png"
            edit = job("加上雪", 1, image_reference="subject", image_fidelity=0.6)
            edit = UpstreamJob(**{**edit.__dict__, "image_urls": [reference]})
            assert (await finished(provider, await provider.submit(edit))).phase == "succeeded"
            assert double.state.references["加上雪"] == [len(reference)]

            refused = await finished(provider, await provider.submit(job("违规 [sandbox:fail]")))
            assert refused.phase == "failed" and refused.error is not None
            assert refused.error.startswith("内容审核未通过:") and RISK_CONTROL in refused.error

            with pytest.raises(UpstreamError) as too_many:
                await provider.submit(job("十只猫", 10))
            assert not too_many.value.transient and not too_many.value.key_rejected
            assert too_many.value.message.startswith("上游拒绝任务:参数值非法(code 1201")
            assert double.state.accepted == {
                "三只猫": 1,
                "少一张 [sandbox:fewer]": 1,
                "加上雪": 1,
                "违规 [sandbox:fail]": 1,
            }
            # One token served every call: it is minted once, not per request.
            assert len(double.tokens) == 1 and not double.refusals
        finally:
            await provider.aclose()

    against_double(test)


def test_the_token_is_renewed_before_it_expires() -> None:
    """Tokens of 4 s, renewed when under 2 s are left: tasks submitted and polled for 7 s
    all succeed, the double sees several tokens (each used more than once) and refuses
    none; so no call relied on the renewal after a 1004."""

    async def test(base_url: str, double: KlingDouble) -> None:
        provider = KlingProvider(base_url, KEY, token_lifetime=4, token_renew_before=2)
        try:
            started, prompts = time.monotonic(), []
            while time.monotonic() - started < 7:
                prompt = f"续期 {len(prompts)}"
                prompts.append(prompt)
                done = await finished(provider, await provider.submit(job(prompt)))
                assert done.phase == "succeeded", done
                await asyncio.sleep(0.3)
            assert not double.refusals
            tokens = list(double.tokens)
            assert len(tokens) >= 3, tokens
            claims = [
                jwt.decode(t, SECRET, algorithms=["HS256"], options={"verify_exp": False})
                for t in tokens
            ]
            assert all(c["iss"] == ACCESS for c in claims)
            assert all(c["exp"] - c["nbf"] == 4 + 5 for c in claims)
            assert len({c["exp"] for c in claims}) == len(tokens)
            # Each token served several calls before the next was minted.
            calls = double.state.submits + double.state.polls
            assert calls > 2 * len(tokens)
            assert double.state.accepted == dict.fromkeys(prompts, 1)
        finally:
            await provider.aclose()

    against_double(test)


def test_a_token_kling_calls_expired_is_renewed_once_and_the_call_sent_again() -> None:
    """A provider that trusts its token 30 s past its end (as one whose clock is behind):
    the double answers 1004, the provider mints a new token and sends the call once more;
    the task is made once."""

    async def test(base_url: str, double: KlingDouble) -> None:
        # Two seconds (an ``exp`` is whole seconds: 1 could leave a new token a moment).
        provider = KlingProvider(base_url, KEY, token_lifetime=2, token_renew_before=-30)
        try:
            await provider.check()
            await asyncio.sleep(3.1)
            done = await finished(provider, await provider.submit(job("过期后重签")))
            assert done.phase == "succeeded"
            assert double.refusals == {1004: 1}
            assert double.state.accepted == {"过期后重签": 1}
            assert len(double.tokens) == 2
        finally:
            await provider.aclose()

    against_double(test)


def test_a_wrong_secret_or_a_key_without_both_halves_is_refused() -> None:
    async def test(base_url: str, double: KlingDouble) -> None:
        wrong = KlingProvider(base_url, f"{ACCESS}:{'x' * 32}")
        try:
            for call in (wrong.check(), wrong.submit(job("错误密钥"))):
                with pytest.raises(UpstreamError) as refused:
                    await call
                error = refused.value
                assert error.key_rejected and not error.transient and error.http_status == 401
                assert error.message.startswith("上游鉴权失败,请检查可灵的 AccessKey 与 SecretKey")
                assert "code 1000" in error.message
            assert double.refusals == {1000: 2}
            calls = sum(double.state.calls_per_second.values())
            for key in (ACCESS, f"{ACCESS}:", f":{SECRET}", " : "):
                provider = KlingProvider(base_url, key)
                for call in (provider.check(), provider.submit(job("半个密钥"))):
                    with pytest.raises(UpstreamError) as refused:
                        await call
                    assert refused.value.message == KEY_FORMAT
                    assert refused.value.key_rejected and not refused.value.transient
                await provider.aclose()
            # Refused before anything was sent.
            assert sum(double.state.calls_per_second.values()) == calls
            assert double.state.submits == 0
        finally:
            await wrong.aclose()

    against_double(test)


def test_the_double_checks_the_token_for_real() -> None:
    """Tokens made by hand, each wrong one way: the double answers each with Kling's code."""

    async def test(base_url: str, double: KlingDouble) -> None:
        now = time.time()

        def token(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
            return jwt.encode(claims, secret, algorithm=algorithm)

        good = {"iss": ACCESS, "exp": int(now) + 60, "nbf": int(now) - 5}
        cases: list[tuple[dict[str, str], int]] = [
            ({}, 1001),
            ({"Authorization": "Bearer"}, 1002),
            ({"Authorization": "Bearer not-a-jwt"}, 1002),
            ({"Authorization": f"Token {mint_token(ACCESS, SECRET, 60, now)}"}, 1002),
            ({"Authorization": f"Bearer {token(good, 'y' * 32)}"}, 1000),
            ({"Authorization": f"Bearer {token({**good, 'iss': 'AK-other'})}"}, 1000),
            ({"Authorization": f"Bearer {token({**good, 'exp': int(now) - 1})}"}, 1004),
            ({"Authorization": f"Bearer {token({**good, 'nbf': int(now) + 60})}"}, 1003),
            ({"Authorization": f"Bearer {token({'iss': ACCESS, 'nbf': int(now) - 5})}"}, 1002),
            ({"Authorization": f"Bearer {token(good, SECRET * 2, 'HS512')}"}, 1002),
            # The access key as the key, as a channel of another protocol would send it.
            ({"Authorization": f"Bearer {KEY}"}, 1002),
        ]
        async with httpx.AsyncClient(base_url=base_url) as client:
            for headers, code in cases:
                for method, path in (
                    ("POST", "/v1/images/generations"),
                    ("GET", "/v1/images/generations/image_x"),
                    ("GET", "/v1/images/generations"),
                ):
                    answer = await client.request(
                        method, path, headers=headers, json={"prompt": "不该生成"}
                    )
                    body = answer.json()
                    assert answer.status_code == 401, (headers, path, body)
                    assert body["code"] == code and body["request_id"], (headers, path, body)
            ok = await client.post(
                "/v1/images/generations",
                headers={"Authorization": f"Bearer {mint_token(ACCESS, SECRET, 60, now)}"},
                json={"model_name": "kling-v1", "prompt": "一只猫", "n": 2},
            )
            assert ok.status_code == 200
            body = ok.json()
            assert body["code"] == 0 and body["message"] == "SUCCEED"
            assert body["data"]["task_status"] == "submitted" and body["data"]["task_id"]
        assert double.state.accepted == {"一只猫": 1}

    against_double(test)


def test_a_demo_key_without_a_colon_is_both_halves_of_itself() -> None:
    """The sandbox's one key (``make run``): the double takes it as access and secret key,
    and the registry hands the provider ``key:key``."""
    from shengtu.providers.registry import PROTOCOLS

    assert PROTOCOLS["kling"].key_pair and PROTOCOLS["kling"].sandbox_path == "/kling"

    async def run() -> None:
        key = "sbx-" + secrets.token_hex(16)
        async with served(key) as (base_url, double):
            provider = KlingProvider(base_url, f"{key}:{key}")
            try:
                await provider.check()
            finally:
                await provider.aclose()
            assert len(double.tokens) == 1

    asyncio.run(run())


def test_the_request_sent_for_a_task() -> None:
    """What a create carries: n, the model, the reference as ``image`` with its fields, and
    neither the reference fields without one nor a negative prompt beside one; the key
    itself in no header."""
    sent: list[tuple[dict[str, Any], dict[str, str]]] = []

    class Recording(KlingProvider):
        async def _send(self, method: str, path: str, *, task_no: str, **kwargs: Any) -> Answer:
            session = self._client()
            sent.append((kwargs["json"], {**session.headers, **kwargs["headers"]}))
            raise UpstreamError("recorded", transient=True)

    async def run() -> None:
        provider = Recording("http://127.0.0.1:9/kling", KEY)
        fields = {"image_reference": "face", "image_fidelity": 0.4, "negative_prompt": "模糊"}
        try:
            for image_urls in ([], ["https://files.example.com/a.png"]):
                task = UpstreamJob(
                    task_no="T",
                    upstream_model="kling-v1-5",
                    params={"aspect_ratio": "9:16", **fields},
                    prompt="一只猫",
                    image_urls=image_urls,
                    count=2,
                )
                with pytest.raises(UpstreamError):
                    await provider.submit(task)
            with pytest.raises(UpstreamError) as two:
                await provider.submit(
                    UpstreamJob(
                        task_no="T",
                        upstream_model="kling-v1-5",
                        params={},
                        prompt="两张参考图",
                        image_urls=["https://a.example/1.png", "https://a.example/2.png"],
                    )
                )
            assert not two.value.transient and "一张参考图" in two.value.message
        finally:
            await provider.aclose()

    asyncio.run(run())
    (text, text_headers), (edit, edit_headers) = sent
    assert text == {
        "aspect_ratio": "9:16",
        "negative_prompt": "模糊",
        "model_name": "kling-v1-5",
        "prompt": "一只猫",
        "n": 2,
    }
    assert edit == {
        "aspect_ratio": "9:16",
        "image_reference": "face",
        "image_fidelity": 0.4,
        "model_name": "kling-v1-5",
        "prompt": "一只猫",
        "n": 2,
        "image": "https://files.example.com/a.png",
    }
    for headers in (text_headers, edit_headers):
        assert headers["Authorization"].startswith("Bearer ey")
        assert SECRET not in json.dumps(headers) and KEY not in json.dumps(headers)


def answer(status: int, body: Any, **headers: str) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Answer(status, CIMultiDictProxy(CIMultiDict(headers)), raw, False)


def kling(code: int, message: str = "msg") -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": "r-1"}


@pytest.mark.parametrize(
    ("status", "code", "transient", "key_rejected", "starts"),
    [
        (401, 1000, False, True, "上游鉴权失败"),
        (401, 1001, False, True, "上游鉴权失败"),
        (401, 1002, False, True, "上游鉴权失败"),
        (401, 1003, True, False, "上游认为令牌尚未生效"),
        (401, 1004, True, False, "上游认为令牌已过期"),
        (429, 1100, False, True, "上游账户异常"),
        (429, 1101, False, True, "上游账户欠费"),
        (429, 1102, False, True, "上游资源包已用完或已过期"),
        (403, 1103, True, False, "上游账户无权使用"),
        (400, 1200, False, False, "上游拒绝任务:请求参数非法"),
        (400, 1201, False, False, "上游拒绝任务:参数值非法"),
        (404, 1202, True, False, "上游不支持该请求方法"),
        (404, 1203, True, False, "上游找不到请求的资源"),
        (400, 1300, False, False, "内容审核未通过:"),
        (400, 1301, False, False, "内容审核未通过:"),
        (429, 1302, True, False, "上游限流"),
        (429, 1303, True, False, "上游并发已满"),
        (429, 1304, False, True, "上游 IP 白名单策略"),
        (500, 5000, True, False, "上游服务内部错误"),
        (503, 5001, True, False, "上游服务暂不可用"),
        (504, 5002, True, False, "上游服务内部超时"),
    ],
)
def test_every_documented_code_is_read(
    status: int, code: int, transient: bool, key_rejected: bool, starts: str
) -> None:
    failure = refusal(answer(status, kling(code, "said so")), creates=True)
    assert failure is not None
    assert (failure.transient, failure.key_rejected, failure.uncertain) == (
        transient,
        key_rejected,
        False,
    )
    assert failure.message.startswith(starts), failure.message
    assert f"code {code}: said so" in failure.message and failure.http_status == status
    if code in (1302, 1303):
        assert failure.retry_after == 1.0


def test_answers_without_a_known_code() -> None:
    assert refusal(answer(200, {**kling(0, "SUCCEED"), "data": {"task_id": "1"}})) is None
    throttled = refusal(answer(429, b"busy", **{"Retry-After": "7"}))
    assert throttled is not None and throttled.transient and throttled.retry_after == 7
    gateway = refusal(answer(502, b"<html>bad gateway</html>"))
    assert gateway is not None and gateway.transient and not gateway.uncertain
    unknown = refusal(answer(400, kling(1999, "新的错误")))
    assert unknown is not None and not unknown.transient and "新的错误" in unknown.message
    said_ok = refusal(answer(200, kling(1201, "n is invalid")))
    assert said_ok is not None and not said_ok.transient and "n is invalid" in said_ok.message
    # A 2xx we cannot read: after a create a task may exist (uncertain); after a query
    # the next query may read.
    created = refusal(answer(200, b'{"code": 0, "data": {'), creates=True)
    assert created is not None and created.uncertain
    polled = refusal(answer(200, b'{"code": 0, "data": {'))
    assert polled is not None and polled.transient and not polled.uncertain


def query(data: dict[str, Any]) -> dict[str, Any]:
    return {**kling(0, "SUCCEED"), "data": {"task_id": "t1", **data}}


def test_every_task_status_is_read() -> None:
    assert task_state(query({"task_status": "submitted"}), "t1").phase == "queued"
    assert task_state(query({"task_status": "processing"}), "t1").phase == "processing"
    done = task_state(
        query(
            {
                "task_status": "succeed",
                "final_unit_deduction": "2",
                "task_result": {
                    "images": [
                        {"index": 1, "url": "https://cdn.example/b.png"},
                        {"index": 0, "url": "https://cdn.example/a.png"},
                        {"index": 2, "url": ""},
                    ]
                },
            }
        ),
        "t1",
    )
    assert done.phase == "succeeded" and done.raw_status == "succeed"
    assert done.result_urls == ("https://cdn.example/a.png", "https://cdn.example/b.png")
    assert done.usage == {"final_unit_deduction": "2"}
    moderated = task_state(query({"task_status": "failed", "task_status_msg": RISK_CONTROL}), "t1")
    assert moderated.phase == "failed" and moderated.error == (
        f"内容审核未通过:上游判定内容不合规({RISK_CONTROL})"
    )
    broken = task_state(
        query({"task_status": "failed", "task_status_msg": "Image pixel is invalid"}), "t1"
    )
    assert broken.error == "图片生成失败:Image pixel is invalid"
    silent = task_state(query({"task_status": "failed"}), "t1")
    assert silent.error == "图片生成失败:上游未说明原因"
    for data, words in (
        ({"task_status": "thinking"}, "上游返回未知状态: thinking"),
        ({"task_status": "succeed", "task_result": {"images": []}}, "没有返回图片地址"),
    ):
        with pytest.raises(UpstreamError) as unread:
            task_state(query(data), "t1")
        assert unread.value.transient and words in unread.value.message
    with pytest.raises(UpstreamError):
        task_state({"code": 0, "message": "SUCCEED"}, "t1")
