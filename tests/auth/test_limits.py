"""Tasks in flight per user and per API key; requests per minute, in memory and in Redis."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import Platform, RedisServer

TIMEOUT_TASK = {"modelName": "sc_soraimg_text_1x1", "prompt": "[sandbox:timeout] 慢慢来"}


def test_tasks_in_flight_are_limited_per_key_and_per_user(audited: Platform) -> None:
    user = audited.new_user(points=1000)
    key = user.client.post("/user/api-keys", json={"name": "批量"}).json()["data"]["key"]
    by_key = audited.client(**{"X-API-Key": key})
    for _ in range(3):
        assert by_key.post("/user/ai/tasks/submit", json=TIMEOUT_TASK).json()["code"] == 200
    refused = by_key.post("/user/ai/tasks/submit", json=TIMEOUT_TASK)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
    assert refused.json()["message"] == "该 API Key进行中的任务已达上限 3 个,请等待任务完成后再提交"

    for _ in range(7):
        assert user.submit(**TIMEOUT_TASK)["code"] == 200
    refused = user.client.post("/user/ai/tasks/submit", json=TIMEOUT_TASK)
    assert (
        refused.status_code == 429
        and "当前用户进行中的任务已达上限 10 个" in refused.json()["message"]
    )
    assert user.balance() == 1000 - 10 * 30  # refusals cost nothing
    assert user.client.get("/user/ai/tasks/list").json()["data"]["total"] == 10


def _hammer(url: str, token: str, n: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers) as client:
        return [client.get("/user/points/consumption/balance") for _ in range(n)]


def test_requests_per_minute_in_memory(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_USER_REQUESTS_PER_MINUTE="5").start()
    try:
        user = platform.new_user()
        codes = [r.status_code for r in _hammer(platform.url, user.token, 7)]
        assert codes == [200] * 5 + [429] * 2
        last = _hammer(platform.url, user.token, 1)[0]
        assert int(last.headers["retry-after"]) >= 1
        assert "该用户每分钟最多 5 次请求" in last.json()["message"]
        other = platform.new_user()
        assert _hammer(platform.url, other.token, 1)[0].status_code == 200
    finally:
        platform.stop()


def test_requests_per_minute_shared_by_api_processes_through_redis(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path).start()
    platform = Platform(
        tmp_path, SHENGTU_REDIS_URL=redis.url, SHENGTU_USER_REQUESTS_PER_MINUTE="6"
    ).start()
    try:
        other = platform.serve_another()
        user = platform.new_user()
        first = [r.status_code for r in _hammer(platform.url, user.token, 3)]
        second = [r.status_code for r in _hammer(other, user.token, 4)]
        assert first == [200] * 3 and second == [200] * 3 + [429]
    finally:
        platform.stop()
        redis.stop()
