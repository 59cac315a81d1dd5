"""The hot reads (shengtu/edge/hot.py) answer exactly as the FastAPI routes they stand in for.

The served platform answers through the hot path; the same database, read through an
in-process app built with ``hot_reads=False``, answers through the routes. Every answer
(status, body bytes, content type and length, Retry-After) must be the same, success or
failure, on every database.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from shengtu.app import ShengtuApp, create_app
from shengtu.assembly import build_context
from shengtu.edge.hot import HotReads, route
from tests.support import Platform, cli

Request = tuple[str, dict[str, str]]


def _answer(response: httpx.Response) -> tuple[Any, ...]:
    return (
        response.status_code,
        response.content,
        response.headers.get("content-type"),
        response.headers.get("content-length"),
        response.headers.get("retry-after"),
    )


def _edge_layers(app: ShengtuApp) -> list[type]:
    layers, layer = [], app.edge
    while layer is not None:
        layers.append(type(layer))
        layer = getattr(layer, "app", None)
    return layers


def through_routes(platform: Platform, requests: list[Request]) -> list[tuple[Any, ...]]:
    async def go() -> list[tuple[Any, ...]]:
        ctx = build_context(platform.settings(), role="api")
        await ctx.start()
        try:
            app = create_app(ctx, with_worker=False, hot_reads=False)
            assert HotReads not in _edge_layers(app)
            assert HotReads in _edge_layers(create_app(ctx, with_worker=False))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return [_answer(await client.get(p, headers=h)) for p, h in requests]
        finally:
            await ctx.aclose()

    return asyncio.run(go())


def served(platform: Platform, requests: list[Request]) -> list[tuple[Any, ...]]:
    with httpx.Client(base_url=platform.url, timeout=30) as client:
        return [_answer(client.get(p, headers=h)) for p, h in requests]


def test_hot_reads_answer_byte_for_byte_as_the_routes(audited: Platform) -> None:
    owner = audited.new_user(points=1000)
    other = audited.new_user(points=1000)
    done = owner.submit(modelName="sc_soraimg_text_1x1", prompt="一只猫,在窗台上。第二句")
    failed = owner.submit(modelName="sc_soraimg_text_1x1", prompt="[sandbox:fail] 失败的任务")
    images = owner.submit(
        modelName="sc_soraimg_img2img_2x3",
        prompt="转换为水彩画风格",
        imageUrl='["https://example.com/a.png","https://example.com/b.png"]',
    )
    numbers = [t["data"]["taskNo"] for t in (done, failed, images)]
    finished = [owner.wait(n) for n in numbers[:2]]
    assert [t["status"] for t in finished] == ["completed", "failed"]
    key = owner.client.post("/user/api-keys", json={"name": "热读"}).json()["data"]["key"]
    revoked = owner.client.post("/user/api-keys", json={"name": "吊销"}).json()["data"]
    assert owner.client.delete(f"/user/api-keys/{revoked['id']}").json()["code"] == 200
    other_key = other.client.post("/user/api-keys", json={"name": "k"}).json()["data"]["key"]
    # A token from before a password change, and a deleted user's token and key.
    moved = audited.new_user()
    moved_token = moved.token
    password = {"oldPassword": moved.password, "newPassword": "another-password"}
    assert moved.client.post("/user/auth/password", json=password).json()["code"] == 200
    gone = audited.new_user()
    gone_key = gone.client.post("/user/api-keys", json={"name": "k"}).json()["data"]["key"]
    cli(audited.env, "user", "delete", gone.name, "--yes")

    jwt = {"Authorization": f"Bearer {owner.token}"}
    by_key = {"X-API-Key": key}
    requests: list[Request] = []
    for n in numbers:
        requests += [(f"/user/ai/tasks/{n}", jwt), (f"/user/ai/tasks/{n}", by_key)]
    english = {"Accept-Language": "en-US,en;q=0.9,zh;q=0.5"}
    requests += [
        # The failure's reason in English, for a client that asks for it.
        (f"/user/ai/tasks/{numbers[1]}", {**jwt, **english}),
        (f"/user/ai/tasks/{numbers[0]}", {**by_key, **english}),
        ("/user/points/consumption/balance", jwt),
        ("/user/points/consumption/balance", by_key),
        # Refusals, each in its envelope.
        ("/user/ai/tasks/TASK-20250101000000000-0000", {**jwt, **english}),
        (f"/user/ai/tasks/{numbers[0]}", {"Authorization": f"Bearer {other.token}"}),
        (f"/user/ai/tasks/{numbers[0]}", {"X-API-Key": other_key}),
        ("/user/ai/tasks/TASK-20250101000000000-0000", jwt),
        ("/user/ai/tasks/" + "任务" * 40, jwt),
        (f"/user/ai/tasks/{numbers[0]}", {}),
        ("/user/points/consumption/balance", {}),
        (f"/user/ai/tasks/{numbers[0]}", {"Authorization": "Bearer not-a-token"}),
        (f"/user/ai/tasks/{numbers[0]}", {"Authorization": f"Bearer {owner.token}x"}),
        (f"/user/ai/tasks/{numbers[0]}", {"X-API-Key": revoked["key"]}),
        (f"/user/ai/tasks/{numbers[0]}", {"X-API-Key": "sk-unknown"}),
        ("/user/points/consumption/balance", {"Authorization": f"Bearer {moved_token}"}),
        ("/user/points/consumption/balance", {"Authorization": f"Bearer {gone.token}"}),
        ("/user/points/consumption/balance", {"X-API-Key": gone_key}),
        # Paths beside the hot ones go on to the routes, in both.
        ("/user/ai/tasks/list", jwt),
        ("/user/ai/tasks/", jwt),
        (f"/user/ai/tasks/{numbers[0]}/", jwt),
        ("/user/points/consumption/balance/", jwt),
    ]
    claimed = [route("GET", path) is not None for path, _ in requests]
    assert claimed == [True] * 24 + [False] * 4  # the served answers are the hot path's
    fast = served(audited, requests)
    reference = through_routes(audited, requests)
    for request, fast_answer, reference_answer in zip(requests, fast, reference, strict=True):
        assert fast_answer == reference_answer, request
    statuses = [answer[0] for answer in fast]
    assert statuses[:10] == [200] * 10
    assert statuses[10:24] == [404] * 5 + [401] * 9
    reasons = [json.loads(answer[1])["data"]["errorMessage"] for answer in fast[2:4] + fast[6:7]]
    assert "内容安全策略" in reasons[0] and reasons[0] == reasons[1]
    assert reasons[2].startswith("Generation failed: ") and reasons[2] != reasons[0]
    assert fast[7] == fast[1]  # nothing else of a task changes with the language
    assert json.loads(fast[10][1])["message"] == "Task TASK-20250101000000000-0000 does not exist"


def test_hot_reads_keep_the_rate_limit(tmp_path: Any) -> None:
    platform = Platform(tmp_path, SHENGTU_USER_REQUESTS_PER_MINUTE="4").start()
    try:
        user = platform.new_user()
        task_no = "TASK-20250101000000000-0000"
        codes = [user.client.get(f"/user/ai/tasks/{task_no}").status_code for _ in range(3)]
        refused = user.client.get("/user/points/consumption/balance")
        assert codes == [404, 404, 404]  # each one counted, though it found nothing
        assert refused.status_code == 200
        refused = user.client.get("/user/points/consumption/balance")
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 15
        assert "该用户每分钟最多 4 次请求" in refused.json()["message"]
    finally:
        platform.stop()


def test_an_api_key_use_is_recorded_without_the_request_waiting(platform: Platform) -> None:
    user = platform.new_user()
    key = user.client.post("/user/api-keys", json={"name": "记录"}).json()["data"]["key"]
    by_key = platform.client(**{"X-API-Key": key})
    assert by_key.get("/user/points/consumption/balance").json()["code"] == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        keys = user.client.get("/user/api-keys").json()["data"]
        if keys[0]["lastUsedTime"] is not None:
            return
        time.sleep(0.1)
    raise AssertionError("the key's use was never recorded")
