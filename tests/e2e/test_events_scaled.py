"""Events across processes: without Redis (the relay's sweep), and with Redis restarted."""

from __future__ import annotations

import json
import time
from pathlib import Path

from websockets.sync.client import connect

from tests.support import Platform, RedisServer, User, free_port, wait_http


def _terminal_events(ws: object, wanted: set[str], timeout: float) -> dict[str, dict[str, object]]:
    seen: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + timeout
    while set(seen) != wanted and time.monotonic() < deadline:
        try:
            event = json.loads(ws.recv(max(0.1, deadline - time.monotonic())))  # type: ignore[attr-defined]
        except TimeoutError:
            break
        data = event.get("data", {})
        if data.get("taskNo") in wanted and data.get("status") in ("completed", "failed"):
            seen[data["taskNo"]] = data
    return seen


def _ws(url: str, token: str) -> str:
    return url.replace("http://", "ws://") + f"/ws/tasks?token={token}"


def test_worker_in_another_process_without_redis(tmp_path: Path) -> None:
    platform = Platform(tmp_path, worker=False, SHENGTU_EVENT_SWEEP_SECONDS="0.5").start()
    try:
        platform.spawn("worker")
        user = platform.new_user(points=300)
        with connect(_ws(platform.url, user.token)) as ws:
            ws.recv(5)
            numbers = {
                user.submit(modelName="sc_soraimg_text_1x1", prompt=f"无 Redis {i}")["data"][
                    "taskNo"
                ]
                for i in range(3)
            }
            numbers.add(
                user.submit(modelName="sc_soraimg_text_1x1", prompt="[sandbox:fail]")["data"][
                    "taskNo"
                ]
            )
            seen = _terminal_events(ws, numbers, 30)
        assert set(seen) == numbers
        assert sorted(str(d["status"]) for d in seen.values()) == ["completed"] * 3 + ["failed"]
        platform.audit()
    finally:
        platform.stop()


def test_two_api_processes_share_events_through_redis_and_survive_its_restart(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path).start()
    platform = Platform(
        tmp_path,
        worker=False,
        SHENGTU_REDIS_URL=redis.url,
        SHENGTU_EVENT_SWEEP_SECONDS="2",
        SHENGTU_SANDBOX_LATENCY="1.5",
    ).start()
    try:
        port2 = free_port()
        second = platform.spawn("serve", "--no-worker", "--port", str(port2))
        url2 = f"http://127.0.0.1:{port2}"
        wait_http(url2 + "/healthz", second)
        platform.spawn("worker")
        user = platform.new_user(points=1000)
        other_api = User(user.name, user.password, user.token, platform.client(user.token))
        other_api.client.base_url = url2  # type: ignore[assignment]
        with connect(_ws(platform.url, user.token)) as ws:
            ws.recv(5)
            # Submitted through the other API process; the WebSocket is on the first.
            first = {
                other_api.submit(modelName="sc_soraimg_text_1x1", prompt=f"跨进程 {i}")["data"][
                    "taskNo"
                ]
                for i in range(4)
            }
            started = time.monotonic()
            seen = _terminal_events(ws, first, 20)
            assert set(seen) == first
            assert time.monotonic() - started < 6  # by Redis, not only by the 2 s sweep

            # Redis goes away while tasks run; every terminal state still arrives.
            second_batch = {
                other_api.submit(modelName="sc_soraimg_text_1x1", prompt=f"重启 Redis {i}")["data"][
                    "taskNo"
                ]
                for i in range(4)
            }
            redis.restart(down_for=1.0)
            seen = _terminal_events(ws, second_batch, 30)
            assert set(seen) == second_batch
        platform.audit()
    finally:
        platform.stop()
        redis.stop()
