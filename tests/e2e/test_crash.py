"""Kill -9 in the middle of tasks: every task still ends, and the ledger stays exact."""

from __future__ import annotations

import time
from pathlib import Path

from tests.databases import ScratchDatabase
from tests.support import Platform, User, wait_http


def _statuses(user: User, numbers: list[str]) -> list[str]:
    return [user.task(n)["status"] for n in numbers]


def test_worker_killed_mid_task_and_restarted_finishes_every_task(
    tmp_path: Path, fresh_database: ScratchDatabase
) -> None:
    platform = Platform.with_sandbox_process(
        tmp_path,
        database_url=fresh_database.url,
        SHENGTU_SANDBOX_LATENCY="3",
        SHENGTU_LEASE_SECONDS="2",
        SHENGTU_TASK_DEADLINE="60",
        SHENGTU_MAX_INFLIGHT_TASKS="50",
    )
    platform.start()
    try:
        user = platform.new_user(points=1000)
        worker = platform.spawn("worker")
        numbers = [
            user.submit(modelName="sc_soraimg_text_2x3", prompt=f"崩溃测试 {i}")["data"]["taskNo"]
            for i in range(8)
        ]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "created" in _statuses(user, numbers):
            time.sleep(0.1)
        assert set(_statuses(user, numbers)) <= {"queued", "processing"}, _statuses(user, numbers)
        worker.kill()
        # Submitted while no worker runs: charged, waiting.
        numbers += [
            user.submit(modelName="sc_soraimg_text_1x1", prompt=f"无人值守 {i}")["data"]["taskNo"]
            for i in range(4)
        ]
        time.sleep(1)
        assert "completed" not in _statuses(user, numbers)
        platform.spawn("worker")
        done = [user.wait(n, timeout=60) for n in numbers]
        assert {d["status"] for d in done} == {"completed"}, done
        assert user.balance() == 1000 - 12 * 30
        platform.audit()
    finally:
        platform.stop()


def test_embedded_server_killed_and_restarted_finishes_every_task(tmp_path: Path) -> None:
    platform = Platform(
        tmp_path, SHENGTU_SANDBOX_LATENCY="2", SHENGTU_LEASE_SECONDS="1", SHENGTU_TASK_DEADLINE="60"
    )
    platform.start()
    try:
        user = platform.new_user(points=1000)
        numbers = [
            user.submit(modelName="sc_soraimg_text_auto", prompt=f"重启测试 {i}")["data"]["taskNo"]
            for i in range(6)
        ]
        time.sleep(0.6)
        platform.server.kill()
        # The sandbox died with it; its job ids carry their state, so a new one answers.
        platform.server = platform.spawn("serve")
        wait_http(platform.url + "/healthz", platform.server)
        done = [user.wait(n, timeout=60) for n in numbers]
        assert {d["status"] for d in done} == {"completed"}, done
        platform.audit()
    finally:
        platform.stop()
