"""Every upstream exchange of a task kept for the operator (issue 23), through the doubles
of the three protocols over real HTTP, on SQLite, MariaDB and PostgreSQL: kept for
submits, polls and downloads, capped, pictures shortened, no key anywhere in the table,
an uncertain submit kept with its request and why it has no answer, pruned past the
retention by the workers' sweep, and shown to operators only."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from shengtu.db import Database, utcnow
from shengtu.tasks.worker import PERIODIC_JOBS
from tests.support import OPENAI_MODELS, SANDBOX_MODEL, Platform, cli, ok, wait_for

FLUX = "flux-schnell"
CAP = 2048
# Over the cap once sent: 3 bytes a character in UTF-8.
LONG_PROMPT = "一座很长很长的山" * 120


def _table(
    platform: Platform, sql: str = "SELECT * FROM upstream_exchange"
) -> list[dict[str, Any]]:
    """Rows of the exchange table read straight from the platform's database, every
    column as the database has it."""

    async def read() -> list[dict[str, Any]]:
        db = Database(platform.settings().resolved_database_url)
        try:
            async with db.read() as session:
                return [dict(r) for r in (await session.execute(text(sql))).mappings()]
        finally:
            await db.dispose()

    return asyncio.run(read())


def _kept(platform: Platform, task_no: str, ready: Callable[[list[dict[str, Any]]], bool]) -> Any:
    """The task's detail for the operator, once its exchanges are written (in the
    background, a moment after each call)."""

    def detail() -> Any:
        shown = ok(platform.admin_client.get(f"/admin/tasks/{task_no}"))
        return shown if ready(shown["exchanges"]) else None

    return wait_for(f"the exchanges of {task_no}", detail, timeout=15)


def _steps(exchanges: list[dict[str, Any]]) -> list[str]:
    return [e["step"] for e in exchanges]


def test_every_exchange_is_kept_for_the_operator_without_a_key(
    own_platform: Callable[..., Platform],
) -> None:
    with own_platform(
        SHENGTU_MAX_INFLIGHT_TASKS="20",
        SHENGTU_TASK_DEADLINE="15",
        SHENGTU_LATE_RESULTS="false",
        SHENGTU_EXCHANGE_BODY_BYTES=str(CAP),
        SHENGTU_SWEEP_INTERVAL_SECONDS="1",
    ) as platform:
        admin = platform.admin_client
        suchuang, suchuang_key = platform.sandbox_upstream("sbx-" + secrets.token_hex(12))
        openai, openai_key = platform.openai_sandbox()
        replicate, replicate_key = platform.sandbox_upstream("r8_" + secrets.token_hex(12))
        platform.add_model(FLUX, task_type="text_to_image", cost=10, upstream_model=FLUX)
        platform.add_channel(
            settle=False, name="速创", baseUrl=suchuang, addKeys=[suchuang_key], timeoutSeconds=1
        )
        platform.add_channel(
            settle=False,
            name="OpenAI",
            protocol="openai_images",
            baseUrl=openai,
            addKeys=[openai_key],
            models=[
                {"modelName": OPENAI_MODELS[0], "upstreamModel": "gpt-image-1"},
            ],
        )
        platform.add_channel(
            name="Replicate",
            protocol="replicate",
            baseUrl=replicate,
            addKeys=[replicate_key],
            models=[{"modelName": FLUX, "upstreamModel": "black-forest-labs/flux-schnell"}],
        )
        keys = (suchuang_key, openai_key, replicate_key)

        user = platform.new_user(points=500)
        numbers = user.submit_all(
            {
                "polled": (SANDBOX_MODEL, "一只猫", None),
                "long": (SANDBOX_MODEL, LONG_PROMPT, None),
                "inline": (OPENAI_MODELS[0], "一只狗", None),
                "replicate": (FLUX, "一片森林", None),
                "lost": (SANDBOX_MODEL, "回答丢失 [sandbox:slowsubmit]", None),
            }
        )
        done = {case: user.wait(n, timeout=40) for case, n in numbers.items()}
        for case in ("polled", "long", "inline", "replicate"):
            assert done[case]["status"] == "completed", (case, done[case])
        assert "无法确认上游是否已接受任务" in done["lost"]["errorMessage"], done["lost"]

        # A polled task: its submit, each poll, and the copy of its picture, in order.
        polled = _kept(platform, numbers["polled"], lambda e: "download" in _steps(e))
        steps = _steps(polled["exchanges"])
        assert steps[0] == "submit" and steps[-1] == "download" and "poll" in steps, steps
        assert polled["exchangeCount"] == len(steps)
        submit = polled["exchanges"][0]
        assert submit["method"] == "POST" and submit["url"] == suchuang + "/api/async/image_gpt"
        assert submit["status"] == 200 and submit["protocol"] == "suchuang"
        assert json.loads(submit["requestBody"])["prompt"] == "一只猫"
        assert submit["requestHeaders"]["Authorization"] == "***"
        assert json.loads(submit["responseBody"])["code"] == 200
        poll = polled["exchanges"][steps.index("poll")]
        assert poll["method"] == "GET" and "/api/async/detail?id=" in poll["url"]
        assert polled["task"]["upstreamId"] in poll["url"]
        download = polled["exchanges"][-1]
        assert download["status"] == 200 and download["responseBody"].startswith("<图片 ")
        channel_ids = {e["channelId"] for e in polled["exchanges"]}
        assert channel_ids == {polled["task"]["channelId"]}
        # A page of them at a time, oldest first.
        page = ok(admin.get(f"/admin/tasks/{numbers['polled']}/exchanges", params={"size": 2}))
        assert page["total"] == len(steps)
        assert [e["id"] for e in page["records"]] == [e["id"] for e in polled["exchanges"][:2]]

        # A body over the cap is cut to it, and says so.
        long = _kept(platform, numbers["long"], lambda e: bool(e))["exchanges"][0]
        body = long["requestBody"]
        kept, note = body.split("\n…")
        assert len(kept.encode()) <= CAP and body.startswith('{"prompt": "一座很长很长的山')
        assert note.startswith("(已截断:共 ") and f"只保留前 {CAP} 字节" in note

        # A synchronous answer with the picture inline: the picture is its length only.
        (inline,) = _kept(platform, numbers["inline"], lambda e: bool(e))["exchanges"]
        assert inline["step"] == "submit" and inline["url"] == openai + "/v1/images/generations"
        answer = json.loads(inline["responseBody"])
        b64 = answer["data"][0]["b64_json"]
        assert b64.startswith("<base64 ") and b64.endswith(" 字符>"), b64
        assert int(b64.split()[1]) > 256
        assert len(inline["responseBody"].encode()) <= CAP

        # Replicate: created, polled until it succeeded, copied.
        replicated = _kept(platform, numbers["replicate"], lambda e: "download" in _steps(e))
        assert _steps(replicated["exchanges"])[0] == "submit"
        assert "poll" in _steps(replicated["exchanges"])
        assert replicated["exchanges"][0]["requestHeaders"]["Authorization"] == "***"

        # A submit whose answer never came: its request kept, and why there is no answer.
        (lost,) = _kept(platform, numbers["lost"], lambda e: bool(e))["exchanges"]
        assert lost["step"] == "submit" and lost["status"] is None
        assert lost["responseBody"] is None
        assert lost["error"] == "上游接口超时(TimeoutError;请求可能已到达上游)", lost
        assert "回答丢失" in json.loads(lost["requestBody"])["prompt"]

        # No key in any column of any row, nor the Authorization header they were sent in.
        rows = _table(platform)
        assert len(rows) >= 10
        everything = json.dumps(rows, ensure_ascii=False, default=str)
        for key in keys:
            assert key not in everything
        assert "Bearer" not in everything
        # Nor in the logs (as before).
        logs = "".join(p.log_text() for p in platform.processes)
        assert not any(key in logs for key in keys)

        # Users see none of it: their task has no exchanges, and the operator's routes
        # refuse them.
        mine = user.task(numbers["polled"])
        assert "exchanges" not in mine and "exchangeCount" not in mine
        assert "requestBody" not in json.dumps(mine)
        for path in (
            f"/admin/tasks/{numbers['polled']}",
            f"/admin/tasks/{numbers['polled']}/exchanges",
        ):
            refused = user.client.get(path).json()
            assert refused["code"] == 403 and not refused.get("data"), refused

        # The workers' sweep deletes exchanges past the retention (7 days by default) and
        # keeps the others.
        assert "exchanges_prune" in [job.name for job in PERIODIC_JOBS]
        old = polled["task"]["taskNo"]
        platform.execute(
            "UPDATE upstream_exchange SET created_at = :then WHERE task_no = :task_no",
            then=utcnow() - timedelta(days=8),
            task_no=old,
        )
        wait_for(
            "the sweep",
            lambda: ok(admin.get(f"/admin/tasks/{old}"))["exchangeCount"] == 0,
            timeout=15,
        )
        assert len(_kept(platform, numbers["replicate"], bool)["exchanges"]) == len(
            replicated["exchanges"]
        )
        remaining = {r["task_no"] for r in _table(platform)}
        assert old not in remaining and numbers["inline"] in remaining
        platform.audit()


def test_shengtu_sweep_deletes_them_too(tmp_path: Path) -> None:
    with Platform(tmp_path) as platform:
        user = platform.new_user(points=30)
        task_no = user.submit(modelName=SANDBOX_MODEL, prompt="会被清理")["data"]["taskNo"]
        assert user.wait(task_no)["status"] == "completed"
        kept = _kept(platform, task_no, lambda e: "download" in _steps(e))["exchangeCount"]
        assert kept >= 3
        # Run with a retention of 0 (keep none), while the server's workers keep 7 days.
        swept = cli({**platform.env, "SHENGTU_EXCHANGE_RETENTION_DAYS": "0"}, "sweep").stdout
        assert f"过期上游往来记录 {kept} 条" in swept, swept
        assert ok(platform.admin_client.get(f"/admin/tasks/{task_no}"))["exchangeCount"] == 0


def test_a_retention_of_zero_keeps_nothing(tmp_path: Path) -> None:
    with Platform(tmp_path, SHENGTU_EXCHANGE_RETENTION_DAYS="0") as platform:
        user = platform.new_user(points=30)
        task_no = user.submit(modelName=SANDBOX_MODEL, prompt="不留记录")["data"]["taskNo"]
        assert user.wait(task_no)["status"] == "completed"
        time.sleep(0.5)  # what would have been written, a moment after each call
        shown = ok(platform.admin_client.get(f"/admin/tasks/{task_no}"))
        assert shown["exchanges"] == [] and shown["exchangeCount"] == 0
        assert _table(platform) == []


def test_a_poll_answer_that_comes_again_is_kept_once_and_counted(
    own_platform: Callable[..., Platform],
) -> None:
    """A Kling job that stays ``processing``: its answers differ only in their request id,
    so the polls keep one row for it, which counts the others (written when the answer
    changes: here when the task fails at its deadline and the late watch asks instead)."""
    with own_platform(
        SHENGTU_TASK_DEADLINE="3",
        SHENGTU_LATE_RESULTS="true",
        SHENGTU_LATE_POLL_SECONDS="0.5",
    ) as platform:
        pair = f"ak-{secrets.token_hex(8)}:sk-{secrets.token_hex(12)}"
        url, _ = platform.sandbox_upstream(pair)
        platform.add_channel(
            name="可灵",
            protocol="kling",
            baseUrl=url + "/kling",
            addKeys=[pair],
            models=[{"modelName": SANDBOX_MODEL, "upstreamModel": "kling-v1-5"}],
        )
        user = platform.new_user(points=100)
        task_no = user.submit(modelName=SANDBOX_MODEL, prompt="一直在画 [sandbox:timeout]")["data"][
            "taskNo"
        ]
        assert user.wait(task_no, timeout=20)["status"] == "failed"
        shown = _kept(
            platform,
            task_no,
            lambda e: (
                "late_poll" in _steps(e) and any(x["step"] == "poll" and x["repeats"] for x in e)
            ),
        )
        polls = [e for e in shown["exchanges"] if e["step"] == "poll" and e["status"] == 200]
        statuses = [json.loads(e["responseBody"])["data"]["task_status"] for e in polls]
        # Each distinct answer once, in order (a first "submitted" only if asked that soon).
        assert statuses[-1] == "processing" and len(statuses) == len(set(statuses)), statuses
        processing = polls[-1]
        assert processing["repeats"] >= 3, processing
        assert processing["lastTime"] > processing["time"]
        # Every poll answered is on a row, kept or counted.
        (task,) = _table(platform, f"SELECT poll_count FROM ai_task WHERE task_no = '{task_no}'")
        assert sum(e["repeats"] + 1 for e in polls) == task["poll_count"]
        # The late watch's questions are a step of their own, after the polls.
        steps = _steps(shown["exchanges"])
        assert steps.index("late_poll") > max(i for i, s in enumerate(steps) if s == "poll")
        everything = json.dumps(_table(platform), ensure_ascii=False, default=str)
        assert not any(part in everything for part in pair.split(":"))
