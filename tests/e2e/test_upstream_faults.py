"""Every way an upstream can misbehave ends terminal, in Chinese, refunded, and logged;
and a misbehaving upstream does not starve the healthy tasks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.chaos import report
from tests.support import Platform, free_port

FAULTS = {
    # directive: (final status, words its errorMessage must carry)
    "submit429": ("completed", ""),
    # Sent, and the answer lost: never sent again (SHENGTU_UNCERTAIN_SUBMIT=fail).
    "slowsubmit": ("failed", "提交上游失败:上游接口超时,无法确认上游是否已接受任务"),
    "slowpoll": ("failed", "任务超时:上游在 10 秒内未完成(最近一次错误:上游接口超时)"),
    "garbage": ("failed", "最近一次错误:上游返回了无法解析的内容"),
    "status7": ("failed", "最近一次错误:上游返回未知状态: 7"),
    "poll429": ("failed", "最近一次错误:上游限流(HTTP 429)"),
    "result404": ("failed", "结果图片转存失败:下载结果图片失败: HTTP 404"),
    "redirectprivate": ("failed", "结果地址不安全"),
    "html": ("failed", "上游返回的结果不是有效图片"),
    "badimage": ("failed", "上游返回的结果不是有效图片"),
    "truncated": ("failed", "上游返回的结果不是有效图片"),
    "huge": ("failed", "结果图片超过 31457280 字节上限"),
    "fail": ("failed", "内容安全策略"),
    "error500": ("failed", "上游服务错误(HTTP 500)(已尝试 3 次)"),
    "timeout": ("failed", "任务超时"),
}


def test_every_upstream_fault_ends_terminal_refunded_and_logged(tmp_path: Path) -> None:
    platform = Platform(
        tmp_path,
        SHENGTU_UPSTREAM_TIMEOUT="1",
        SHENGTU_TASK_DEADLINE="10",
        SHENGTU_SANDBOX_LATENCY="0.5",
        SHENGTU_MAX_INFLIGHT_TASKS="100",
    ).start()
    try:
        user = platform.new_user(points=10_000)
        numbers = {
            directive: user.submit(
                modelName="sc_soraimg_text_1x1", prompt=f"故障 [sandbox:{directive}]"
            )["data"]["taskNo"]
            for directive in FAULTS
        }
        # Ten more that hang the worker's polls, and healthy tasks beside them.
        for i in range(10):
            user.submit(modelName="sc_soraimg_text_1x1", prompt=f"拖慢 {i} [sandbox:slowpoll]")
        started = time.monotonic()
        healthy = [
            user.submit(modelName="sc_soraimg_text_1x1", prompt=f"健康 {i}")["data"]["taskNo"]
            for i in range(5)
        ]
        for task_no in healthy:
            assert user.wait(task_no, timeout=20)["status"] == "completed"
        # Starved, they would wait for the bad tasks to die at their 10 s deadline.
        assert time.monotonic() - started < 9, "healthy tasks were starved by a bad upstream"

        log = [
            json.loads(line)
            for line in platform.server.log_text().splitlines()
            if line.startswith("{")
        ]
        completed = 0
        for directive, (status, words) in FAULTS.items():
            task = user.wait(numbers[directive], timeout=40)
            assert task["status"] == status, (directive, task)
            if status == "completed":
                completed += 1
                continue
            assert words in task["errorMessage"], (directive, task["errorMessage"])
            log = [
                json.loads(line)
                for line in platform.server.log_text().splitlines()
                if line.startswith("{")
            ]
            reasons = [
                e.get("reason", "")
                for e in log
                if e.get("task_no") == numbers[directive] and e.get("event") == "task_failed"
            ]
            assert reasons and words in reasons[0], (directive, reasons)

        # Retries are spaced: the 429's Retry-After was honoured.
        retries = [
            e
            for e in log
            if e.get("task_no") == numbers["submit429"] and e.get("event") == "step_retry"
        ]
        assert retries and retries[0]["delay"] >= 1.0
        for task_no in [*numbers.values()]:
            user.wait(task_no, timeout=40)
        # Ten slowpoll tasks still run to their deadline; all must end before we count points.
        listed = user.client.get("/user/ai/tasks/list?size=100").json()["data"]["records"]
        for record in listed:
            user.wait(record["taskNo"], timeout=40)
        done = sum(
            1
            for r in user.client.get("/user/ai/tasks/list?size=100&status=completed").json()[
                "data"
            ]["records"]
        )
        assert done == completed + len(healthy)
        assert user.balance() == 10_000 - 30 * done
        audit = platform.audit()
        report(
            "upstream faults (sandbox directives)",
            cases=len(FAULTS),
            tasks=len(listed),
            faults=len(listed) - len(healthy) - 1,  # every task but the healthy and the 429 one
            violations=audit.count("[违反]"),
        )
    finally:
        platform.stop()


def test_connection_refused_fails_after_bounded_retries(tmp_path: Path) -> None:
    platform = Platform(
        tmp_path,
        SHENGTU_SUCHUANG_BASE_URL=f"http://127.0.0.1:{free_port()}",
        SHENGTU_SUCHUANG_API_KEY="sk-upstream-that-is-not-there",
    ).start()
    try:
        user = platform.new_user(points=30)
        task = user.wait(
            user.submit(modelName="sc_soraimg_text_1x1", prompt="没有上游")["data"]["taskNo"]
        )
        assert task["status"] == "failed"
        assert (
            task["errorMessage"]
            == "提交上游失败:无法连接上游接口:连接被拒绝或地址不可达(已尝试 3 次)"
        )
        assert user.balance() == 30
        assert "sk-upstream-that-is-not-there" not in platform.server.log_text()
        platform.audit()
    finally:
        platform.stop()


@pytest.mark.parametrize(("policy", "jobs"), [("fail", 1), ("retry", 3)])
def test_an_uncertain_submit_starts_as_many_upstream_jobs_as_the_policy_says(
    tmp_path: Path, policy: str, jobs: int
) -> None:
    """The sandbox takes the job but answers after the client gave up: did it start?
    ``fail`` never asks twice; ``retry`` (for upstreams that deduplicate) asks again."""
    platform = Platform.with_sandbox_process(
        tmp_path,
        worker=True,
        SHENGTU_UPSTREAM_TIMEOUT="1",
        SHENGTU_UNCERTAIN_SUBMIT=policy,
    ).start()
    try:
        user = platform.new_user(points=30)
        prompt = f"答复丢失 {policy} [sandbox:slowsubmit]"
        task = user.wait(
            user.submit(modelName="sc_soraimg_text_1x1", prompt=prompt)["data"]["taskNo"]
        )
        assert task["status"] == "failed"
        assert user.balance() == 30
        time.sleep(3.5)  # the sandbox's SLOW_SECONDS: its last job is accepted by now
        accepted = httpx.get(platform.sandbox_url + "/stats").json()["accepted"]
        assert accepted.get(prompt) == jobs, accepted
        counted = [
            e
            for e in (
                json.loads(line)
                for line in platform.server.log_text().splitlines()
                if line.startswith("{")
            )
            if e.get("event") == "uncertain_submit" and e.get("task_no") == task["taskNo"]
        ]
        assert len(counted) == jobs and {e["policy"] for e in counted} == {policy}
        assert platform.admin is not None
        channels = platform.admin.client.get("/admin/channels").json()["data"]
        assert [c["uncertainCount"] for c in channels] == [jobs]
        platform.audit()
    finally:
        platform.stop()


def test_a_step_slower_than_its_lease_is_not_run_twice(tmp_path: Path) -> None:
    """The submit takes 3 s and the lease 1 s: the worker keeps the lease alive and never
    claims the task again while its step runs, so the upstream sees one job."""
    platform = Platform.with_sandbox_process(
        tmp_path, worker=True, SHENGTU_LEASE_SECONDS="1", SHENGTU_UPSTREAM_TIMEOUT="6"
    ).start()
    try:
        user = platform.new_user(points=30)
        prompt = "慢提交 [sandbox:slowsubmit]"
        task = user.wait(
            user.submit(modelName="sc_soraimg_text_1x1", prompt=prompt)["data"]["taskNo"]
        )
        assert task["status"] == "completed", task
        time.sleep(4)  # a second submit, had one been sent, is answered by now
        accepted = httpx.get(platform.sandbox_url + "/stats").json()["accepted"]
        assert accepted.get(prompt) == 1, accepted
        lost = [line for line in platform.server.log_text().splitlines() if "lease_lost" in line]
        assert lost == []
        platform.audit()
    finally:
        platform.stop()
