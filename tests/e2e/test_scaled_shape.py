"""The scaled shape, whole: 2 API and 2 worker processes on MariaDB (and on PostgreSQL)
with Redis; 300 tasks with mixed outcomes; a worker killed and Redis restarted midway."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.databases import ScratchDatabase
from tests.support import Platform, RedisServer, User, free_port, wait_http

TASKS = 300
USERS = 10
WORKER_CONCURRENCY = 64
KINDS = ["ok"] * 8 + ["fail", "error500"]


def _prompt(backend: str, i: int, kind: str) -> str:
    directive = {"ok": "", "fail": " [sandbox:fail]", "error500": " [sandbox:error500]"}[kind]
    return f"规模测试 {backend} #{i}{directive}"


async def _listen(url: str, user: User, terminal: dict[str, str], stop: asyncio.Event) -> None:
    ws_url = url.replace("http://", "ws://") + f"/ws/tasks?token={user.token}"
    async with connect(ws_url) as ws:
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            data = json.loads(message).get("data", {})
            if data.get("status") in ("completed", "failed"):
                terminal[data["taskNo"]] = data["status"]


async def _submit(url: str, user: User, prompt: str, sem: asyncio.Semaphore) -> str:
    async with sem, httpx.AsyncClient(base_url=url, timeout=60) as client:
        r = await client.post(
            "/user/ai/tasks/submit",
            headers={"Authorization": f"Bearer {user.token}"},
            json={"modelName": "sc_soraimg_text_1x1", "prompt": prompt},
        )
        body = r.json()
        assert body["code"] == 200, body
        return str(body["data"]["taskNo"])


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_scaled_shape_survives_a_killed_worker_and_a_redis_restart(
    tmp_path: Path, backend: str
) -> None:
    with ScratchDatabase(backend) as database:
        redis = RedisServer(tmp_path).start()
        platform = Platform.with_sandbox_process(
            tmp_path,
            database_url=database.url,
            SHENGTU_REDIS_URL=redis.url,
            SHENGTU_SANDBOX_LATENCY="2",
            SHENGTU_POLL_INTERVAL="0.3",
            SHENGTU_FIRST_POLL_DELAY="0.2",
            SHENGTU_LEASE_SECONDS="3",
            SHENGTU_TASK_DEADLINE="120",
            SHENGTU_MAX_INFLIGHT_TASKS="1000",
            SHENGTU_EVENT_SWEEP_SECONDS="2",
            SHENGTU_UPSTREAM_RPS="2000",
            # Its error500 tasks fail on purpose, not a sick upstream: no breaker here
            # (tests/channels/test_channels.py and tests/e2e/test_channel_failover.py test it).
            SHENGTU_BREAKER_FAILURES="1000",
            SHENGTU_BREAKER_MIN_ATTEMPTS="100000",
            SHENGTU_WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
            SHENGTU_LOG_LEVEL="WARNING",
        )
        platform.start()
        try:
            port2 = free_port()
            api2 = f"http://127.0.0.1:{port2}"
            wait_http(
                api2 + "/healthz", platform.spawn("serve", "--no-worker", "--port", str(port2))
            )
            workers = [platform.spawn("worker"), platform.spawn("worker")]
            users = [platform.new_user(points=100_000) for _ in range(USERS)]
            plan = [(i, users[i % USERS], KINDS[(i // USERS) % len(KINDS)]) for i in range(TASKS)]
            terminal: dict[int, dict[str, str]] = {u_i: {} for u_i in range(USERS)}

            async def run() -> dict[str, tuple[int, str, str]]:
                stop = asyncio.Event()
                listeners = [
                    asyncio.create_task(_listen(platform.url, u, terminal[n], stop))
                    for n, u in enumerate(users)
                ]
                await asyncio.sleep(0.5)
                sem = asyncio.Semaphore(32)
                numbers: dict[str, tuple[int, str, str]] = {}

                async def batch(items: list[tuple[int, User, str]]) -> None:
                    got = await asyncio.gather(
                        *(
                            _submit(
                                platform.url if i % 2 == 0 else api2, u, _prompt(backend, i, k), sem
                            )
                            for i, u, k in items
                        )
                    )
                    for (i, u, k), task_no in zip(items, got, strict=True):
                        numbers[task_no] = (users.index(u), k, _prompt(backend, i, k))

                await batch(plan[: TASKS // 2])
                await asyncio.sleep(1.0)
                workers[0].kill()
                await asyncio.to_thread(redis.restart, 1.0)
                await batch(plan[TASKS // 2 :])

                deadline = time.monotonic() + 150
                while time.monotonic() < deadline:
                    if sum(len(t) for t in terminal.values()) >= TASKS:
                        break
                    await asyncio.sleep(0.5)
                stop.set()
                await asyncio.gather(*listeners)
                return numbers

            began = time.monotonic()
            numbers = asyncio.run(run())
            assert len(numbers) == TASKS

            # Every task terminal, as its kind says, seen by its owner's WebSocket on API 1.
            final = {}
            for n, user in enumerate(users):
                records = user.client.get("/user/ai/tasks/list?size=100").json()["data"]["records"]
                final.update({r["taskNo"]: r["status"] for r in records})
                missing = {t for t, (owner, _, _) in numbers.items() if owner == n} - set(
                    terminal[n]
                )
                assert not missing, f"user {n} got no terminal event for {sorted(missing)[:5]}"
            expected = {
                t: ("completed" if kind == "ok" else "failed")
                for t, (_, kind, _) in numbers.items()
            }
            assert final == expected

            # Balances: only completed tasks cost points.
            for n, user in enumerate(users):
                done = sum(
                    1 for t, (owner, kind, _) in numbers.items() if owner == n and kind == "ok"
                )
                assert user.balance() == 100_000 - 30 * done

            # Upstream: a task runs twice only if a worker died between the upstream
            # accepting it and our write; at most one per step the killed worker had.
            accepted: Counter[str] = Counter(
                httpx.get(platform.sandbox_url + "/stats").json()["accepted"]
            )
            for _, kind, prompt in numbers.values():
                if kind == "error500":
                    assert accepted[prompt] == 0
                else:
                    assert 1 <= accepted[prompt] <= 2, (prompt, accepted[prompt])
            twice = sum(1 for _, _, p in numbers.values() if accepted[p] == 2)
            assert twice <= WORKER_CONCURRENCY
            outcomes = Counter(final.values())
            print(
                f"\nscaled shape on {backend}: {TASKS} tasks, {outcomes['completed']} completed, "
                f"{outcomes['failed']} failed, 1 worker SIGKILLed, Redis restarted once, "
                f"{twice} run twice upstream, {time.monotonic() - began:.1f} s"
            )
            platform.audit()
        finally:
            platform.stop()
            redis.stop()
