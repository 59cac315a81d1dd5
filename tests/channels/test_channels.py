"""Upstream channels (issue 12): keys sealed at rest, routing by priority and weight,
failover on failures that certainly started no job, and keys the upstream refuses."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support import SANDBOX_MODEL, Platform, cli, free_port, wait_http

MODEL = SANDBOX_MODEL


def _accepted(sandbox_url: str) -> int:
    return sum(httpx.get(sandbox_url + "/stats").json()["accepted"].values())


def test_keys_are_sealed_at_rest_masked_in_answers_and_absent_from_logs(tmp_path: Path) -> None:
    platform = Platform(tmp_path).start()
    try:
        url, key = platform.sandbox_upstream()
        made = platform.add_channel(name="备用", baseUrl=url, addKeys=[key])
        (shown_key,) = made["keys"]
        assert shown_key["key"] == "…" + key[-4:] and shown_key["enabled"] is True
        assert shown_key["breaker"] == "closed"

        assert platform.admin is not None
        listed = platform.admin.client.get("/admin/channels").text
        shown = platform.admin.client.get(f"/admin/channels/{made['id']}").text
        assert key not in listed and key not in shown
        with sqlite3.connect(platform.data_dir / "shengtu.db") as db:
            (sealed,) = db.execute("SELECT sealed FROM channel_key").fetchone()
        assert key not in sealed
        assert key.encode() not in (platform.data_dir / "shengtu.db").read_bytes()
        # And it works: a task goes through it.
        user = platform.new_user(points=30)
        task = user.wait(user.submit(modelName=MODEL, prompt="经渠道")["data"]["taskNo"])
        assert task["status"] == "completed"
        assert _accepted(url) == 1
        for proc in platform.processes:
            assert key not in proc.log_text()
        # Users see no channel.
        assert "channel" not in str(task).lower()
        assert user.client.get("/admin/channels").status_code == 403
    finally:
        platform.stop()


def test_failover_to_the_next_channel_and_priority_first(tmp_path: Path) -> None:
    platform = Platform(tmp_path).start()
    try:
        good_url, good_key = platform.sandbox_upstream()
        dead = f"http://127.0.0.1:{free_port()}"  # refuses connections: no job started
        platform.add_channel(name="主渠道", baseUrl=dead, addKeys=["sk-dead-000000"], priority=10)
        platform.add_channel(name="备用", baseUrl=good_url, addKeys=[good_key], priority=0)
        user = platform.new_user(points=30 * 5)
        numbers = [
            user.submit(modelName=MODEL, prompt=f"转移 {i}")["data"]["taskNo"] for i in range(5)
        ]
        for task_no in numbers:
            assert user.wait(task_no)["status"] == "completed"
        assert _accepted(good_url) == 5
        # Admins see each try: the dead channel refused, the spare accepted.
        assert platform.admin is not None
        tries = platform.admin.client.get(f"/admin/tasks/{numbers[0]}/attempts").json()["data"]
        assert [(t["channelName"], t["outcome"]) for t in tries] == [
            ("主渠道", "failed"),
            ("备用", "accepted"),
        ], tries
        assert "无法连接上游接口" in tries[0]["error"]
        assert user.client.get(f"/admin/tasks/{numbers[0]}/attempts").status_code == 403
        assert user.balance() == 0
        platform.audit()
    finally:
        platform.stop()


def test_a_refused_key_is_disabled_with_its_reason_and_no_channel_left_refunds(
    tmp_path: Path,
) -> None:
    platform = Platform(tmp_path).start()
    try:
        url, key = platform.sandbox_upstream()
        bad = platform.add_channel(
            name="坏密钥", baseUrl=url, addKeys=["sk-wrong-key-1234"], priority=5
        )
        platform.add_channel(name="好密钥", baseUrl=url, addKeys=[key])
        user = platform.new_user(points=60)
        first = user.wait(user.submit(modelName=MODEL, prompt="换个密钥")["data"]["taskNo"])
        assert first["status"] == "completed"
        assert platform.admin is not None
        shown = platform.admin.client.get(f"/admin/channels/{bad['id']}").json()["data"]
        assert shown["keys"][0]["enabled"] is False
        assert "鉴权失败" in shown["keys"][0]["disabledReason"]

        # The good one disabled too: nothing is left, and the task says so, refunded.
        channels = platform.admin.client.get("/admin/channels").json()["data"]
        good = next(c for c in channels if c["name"] == "好密钥")
        assert (
            platform.admin.client.post(f"/admin/channels/{good['id']}/disable").json()["data"][
                "enabled"
            ]
            is False
        )
        time.sleep(1.2)  # workers re-read the channels every second
        before = user.balance()
        last = user.wait(user.submit(modelName=MODEL, prompt="无路可走")["data"]["taskNo"])
        assert last["status"] == "failed"
        assert "没有可用的上游渠道" in last["errorMessage"]
        assert user.balance() == before
        platform.audit()
    finally:
        platform.stop()


def test_channels_from_the_command_line(tmp_path: Path) -> None:
    platform = Platform(tmp_path).start()
    try:
        url, key = platform.sandbox_upstream()
        added = cli(
            platform.env,
            "channel",
            "add",
            "--name",
            "命令行",
            "--base-url",
            url,
            "--key",
            key,
            "--model",
            f'{MODEL}=image_gpt:{{"size": "1:1"}}',
        ).stdout
        channel_id = added.split("\t")[0]
        assert key not in added and "…" + key[-4:] in added
        assert "命令行" in cli(platform.env, "channel", "list").stdout
        assert "密钥有效" in cli(platform.env, "channel", "test", channel_id).stdout
        cli(platform.env, "channel", "disable", channel_id)
        shown = cli(platform.env, "channel", "show", channel_id).stdout
        assert '"enabled": false' in shown and key not in shown
        cli(platform.env, "channel", "delete", channel_id)
        assert "命令行" not in cli(platform.env, "channel", "list").stdout
        refused = cli(
            platform.env,
            "channel",
            "add",
            "--name",
            "x",
            "--base-url",
            "ftp://a",
            "--key",
            key,
            "--model",
            MODEL,
            check=False,
        )
        assert refused.returncode == 1 and "baseUrl" in refused.stderr
    finally:
        platform.stop()


def _key_state(platform: Platform, channel_id: int) -> dict[str, Any]:
    assert platform.admin is not None
    data = platform.admin.client.get(f"/admin/channels/{channel_id}").json()["data"]
    return data["keys"][0]  # type: ignore[no-any-return]


def test_a_dead_channel_opens_its_breaker_and_a_probe_closes_it(tmp_path: Path) -> None:
    # SQLite only: the breaker's writes on MariaDB and PostgreSQL are tested by the error
    # rate test below, and the probe's claim by tests/e2e/test_channel_failover.py's size.
    platform = Platform(
        tmp_path,
        SHENGTU_BREAKER_FAILURES="2",
        SHENGTU_BREAKER_COOLDOWN_SECONDS="1",
        SHENGTU_BREAKER_MAX_COOLDOWN_SECONDS="4",
        SHENGTU_MAX_INFLIGHT_TASKS="100",
    ).start()
    try:
        port, key = free_port(), "sbx-" + secrets.token_hex(8)
        main_url = f"http://127.0.0.1:{port}"
        main = platform.spawn("sandbox", "--port", str(port), "--key", key)
        wait_http(main_url + "/healthz", main)
        spare_url, spare_key = platform.sandbox_upstream()
        first = platform.add_channel(name="主", baseUrl=main_url, addKeys=[key], priority=10)
        platform.add_channel(name="备", baseUrl=spare_url, addKeys=[spare_key])
        user = platform.new_user(points=30 * 100)

        def run(n: int, label: str) -> None:
            numbers = [
                user.submit(modelName=MODEL, prompt=f"{label} {i}")["data"]["taskNo"]
                for i in range(n)
            ]
            for task_no in numbers:
                assert user.wait(task_no)["status"] == "completed"

        run(5, "正常")
        assert _accepted(main_url) == 5 and _accepted(spare_url) == 0

        main.kill()  # the main channel's upstream dies
        run(10, "故障")
        assert _accepted(spare_url) == 10
        state = _key_state(platform, first["id"])
        assert state["breaker"] in ("open", "probe") and state["lastError"], state

        main = platform.spawn("sandbox", "--port", str(port), "--key", key)
        wait_http(main_url + "/healthz", main)
        deadline = time.monotonic() + 30
        while _key_state(platform, first["id"])["breaker"] != "closed":
            assert time.monotonic() < deadline, _key_state(platform, first["id"])
            run(1, "探测")
            time.sleep(0.5)
        run(5, "恢复")
        assert _accepted(main_url) >= 5  # traffic is back on the main channel
        assert _key_state(platform, first["id"])["consecutiveFailures"] == 0
        platform.audit()
    finally:
        platform.stop()


def test_an_error_rate_opens_the_breaker_and_admins_see_rates_and_latencies(
    own_platform: Callable[..., Platform],
) -> None:
    """Never two failures in a row, but half of the tries fail: the window's error rate
    opens the breaker. And the channel's page shows the hour's figures."""
    with own_platform(
        SHENGTU_BREAKER_FAILURES="100",
        SHENGTU_BREAKER_MIN_ATTEMPTS="6",
        SHENGTU_BREAKER_ERROR_RATE="0.5",
        SHENGTU_BREAKER_COOLDOWN_SECONDS="60",
        SHENGTU_SUBMIT_ATTEMPTS="1",
    ) as platform:
        url, key = platform.sandbox_upstream()
        made = platform.add_channel(name="时好时坏", baseUrl=url, addKeys=[key])
        user = platform.new_user(points=30 * 6)
        outcomes = []
        for i in range(6):
            # A 500 certainly started no job; with one try allowed, the task fails at once.
            prompt = f"交替 {i}" + (" [sandbox:error500]" if i % 2 else "")
            task_no = user.submit(modelName=MODEL, prompt=prompt)["data"]["taskNo"]
            outcomes.append(user.wait(task_no)["status"])
            state = _key_state(platform, made["id"])
            assert state["consecutiveFailures"] <= 1, state
            if i < 5:
                assert state["breaker"] == "closed", (i, state)
        assert outcomes == ["completed", "failed"] * 3
        state = _key_state(platform, made["id"])
        assert state["breaker"] == "open", state
        hour = state["lastHour"]
        assert (hour["attempts"], hour["accepted"], hour["failed"]) == (6, 3, 3), hour
        assert hour["successRate"] == 0.5
        assert 0 < hour["p50Ms"] <= hour["p95Ms"], hour
        assert state["lastDay"]["attempts"] == 6
        assert platform.admin is not None
        channel = platform.admin.client.get(f"/admin/channels/{made['id']}").json()["data"]
        assert channel["lastHour"]["attempts"] == 6
        # With its breaker open for a minute and no other channel, the next task waits.
        waiting = user.submit(modelName=MODEL, prompt="等待")["data"]["taskNo"]
        time.sleep(1.5)
        assert user.task(waiting)["status"] == "created"
        # A waiting task is stepped every poll interval; a cancel that meets a step answers
        # 409 (try again), as it says.
        for _ in range(50):
            cancelled = user.client.post(f"/user/ai/tasks/{waiting}/cancel").json()
            if cancelled["code"] != 409:
                break
            time.sleep(0.1)
        assert cancelled["code"] == 200, cancelled
        assert user.balance() == 30 * 3
        platform.audit()
