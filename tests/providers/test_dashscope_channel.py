"""DashScope (通义万相) upstreams (issue 23): image synthesis tasks created, polled and
cancelled through a channel, against the sandbox's double over real HTTP, with every fault
kind it can show, on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.support import Platform, User, cli, drawn, ok, png

WANX, WANX_EDIT, WANX_QUEUED = "wanx-t2i", "wanx-edit", "wanx-queued"
SIZES = ("1024x1024", "720x1280", "1280x720")
# Offered as OpenAI spells sizes, sent as DashScope does.
WANX_PARAMETERS = {
    "choices": {
        "size": {
            "values": list(SIZES),
            "default": "1024x1024",
            "map": {size: size.replace("x", "*") for size in SIZES},
        }
    },
    "maxN": 4,
}


def add_model(platform: Platform, name: str, task_type: str, cost: int, **more: Any) -> None:
    made = platform.admin_client.post(
        "/admin/models",
        json={
            "modelName": name,
            "description": name,
            "pointsCost": cost,
            "taskType": task_type,
            "upstreamModel": name,
            **more,
        },
    ).json()
    assert made["code"] == 200, made


def cancel_once_accepted(user: User, task_no: str, settle: float = 0.0) -> None:
    """The user's cancel, as soon as the upstream has the task (after ``settle`` more)."""
    deadline = time.monotonic() + 10
    while user.task(task_no)["status"] == "created":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(settle)
    cancelled = user.client.post(f"/user/ai/tasks/{task_no}/cancel").json()
    assert cancelled["code"] == 200, cancelled


def test_dashscope_channels_with_every_fault_and_cancel(
    own_platform: Callable[..., Platform],
) -> None:
    with own_platform(
        SHENGTU_MAX_INFLIGHT_TASKS="50",
        SHENGTU_TASK_DEADLINE="8",
        SHENGTU_SUBMIT_ATTEMPTS="2",
        SHENGTU_LATE_RESULTS="false",
    ) as platform:
        admin = platform.admin_client
        sandbox, key = platform.sandbox_upstream("sk-" + secrets.token_hex(16))
        # Another DashScope whose tasks wait in its queue 6 s (a tenth of its latency):
        # DashScope cancels a task only while it is queued.
        queue, queue_key = platform.sandbox_upstream(
            "sk-" + secrets.token_hex(16), env={**platform.env, "SHENGTU_SANDBOX_LATENCY": "60"}
        )
        wrong_key = "sk-" + secrets.token_hex(16)
        add_model(platform, WANX, "text_to_image", 20, parameters=WANX_PARAMETERS)
        add_model(platform, WANX_EDIT, "image_to_image", 30)
        add_model(platform, WANX_QUEUED, "text_to_image", 20)

        def channel(**body: Any) -> int:
            return int(platform.add_channel(settle=False, protocol="dashscope", **body)["id"])

        text_model = {"modelName": WANX, "upstreamModel": "wanx2.1-t2i-turbo"}
        # A key DashScope refuses, first by priority: its tasks move on to the good one.
        refused = channel(
            name="百炼-坏密钥",
            baseUrl=sandbox,
            addKeys=[wrong_key],
            priority=9,
            models=[text_model],
        )
        good = channel(
            name="百炼",
            baseUrl=sandbox,
            addKeys=[key],
            timeoutSeconds=2,
            models=[
                {**text_model, "upstreamParams": {"watermark": False}},
                {
                    "modelName": WANX_EDIT,
                    "upstreamModel": "wanx2.1-imageedit",
                    "upstreamParams": {"function": "description_edit", "strength": 0.5},
                },
            ],
        )
        channel(
            name="百炼-排队",
            baseUrl=queue,
            addKeys=[queue_key],
            models=[{"modelName": WANX_QUEUED, "upstreamModel": "wan2.2-t2i-flash"}],
        )
        checked = ok(admin.post(f"/admin/channels/{good}/test"))
        assert checked["ok"] is True, checked
        told = ok(admin.post(f"/admin/channels/{refused}/test"))
        assert told["ok"] is False and "鉴权失败" in told["message"], told
        time.sleep(1.2)  # workers re-read the channels every second

        user = platform.new_user(points=1000)
        upload = ok(
            user.client.post("/user/files/upload", files={"file": ("ref.png", png(), "image/png")})
        )
        cases: dict[str, tuple[str, str, str | None]] = {
            "plain": (WANX, "一片森林", None),
            "edit": (WANX_EDIT, "加上雪", upload["url"]),
            "throttled": (WANX, "限流 [sandbox:submit429]", None),
            "poll429": (WANX, "查询限流 [sandbox:poll429]", None),
            "moderated": (WANX, "违规 [sandbox:fail]", None),
            "down": (WANX, "故障 [sandbox:error500]", None),
            "lost": (WANX, "回答丢失 [sandbox:slowsubmit]", None),
            "unknown": (WANX, "未知状态 [sandbox:status7]", None),
            "garbage": (WANX, "查询乱码 [sandbox:garbage]", None),
            "slowpoll": (WANX, "查询超时 [sandbox:slowpoll]", None),
            "hung": (WANX, "一直生成 [sandbox:timeout]", None),
            "badimage": (WANX, "坏图 [sandbox:badimage]", None),
            "private": (WANX, "跳转内网 [sandbox:redirectprivate]", None),
            "gone": (WANX, "结果过期 [sandbox:result404]", None),
            "html": (WANX, "网页 [sandbox:html]", None),
            "truncated": (WANX, "半张图 [sandbox:truncated]", None),
            "cancel_running": (WANX, "生成中取消", None),
            "cancel_queued": (WANX_QUEUED, "排队中取消", None),
        }
        numbers = user.submit_all(cases)
        several = {
            "four": ("四张竖图", "720x1280"),
            "fewer": ("少一张 [sandbox:fewer]", "1280x720"),
        }
        for case, (prompt, size) in several.items():
            answer = user.submit(modelName=WANX, prompt=prompt, n=4, parameters={"size": size})
            assert answer["code"] == 200, (case, answer)
            numbers[case] = answer["data"]["taskNo"]
        # Queued upstream: DashScope cancels it, and ours fails, its points back. Running:
        # it refuses, the job runs on and is paid for, and ours runs on to its picture.
        cancel_once_accepted(user, numbers["cancel_queued"])
        cancel_once_accepted(user, numbers["cancel_running"], settle=0.3)

        done = {case: user.wait(n, timeout=40) for case, n in numbers.items()}
        for case in ("plain", "edit", "throttled", "four", "fewer", "cancel_running"):
            assert done[case]["status"] == "completed", (case, done[case])

        def pictures(case: str) -> list[tuple[int, int]]:
            urls = done[case]["resultUrls"]
            assert urls[0] == done[case]["resultUrl"]
            answers = [httpx.get(url) for url in urls]
            assert len({a.content for a in answers}) == len(urls), case  # a picture each
            return [Image.open(io.BytesIO(a.content)).size for a in answers]

        assert pictures("plain") == pictures("edit") == [drawn(1024, 1024)]
        assert pictures("four") == [drawn(768, 1344)] * 4  # 720*1280, at the nearest 9:16
        assert pictures("fewer") == [drawn(1344, 768)] * 3  # one refused upstream
        assert (done["fewer"]["pictures"], done["fewer"]["delivered"]) == (4, 3)
        assert done["fewer"]["pointsRefunded"] == 20

        def failed(case: str, words: str) -> None:
            task = done[case]
            assert task["status"] == "failed" and words in task["errorMessage"], (case, task)

        failed("moderated", "内容审核未通过:上游判定生成的图片含不当内容(DataInspectionFailed)")
        failed("down", "上游服务错误(HTTP 500)")
        failed("lost", "无法确认上游是否已接受任务")
        failed("unknown", "上游返回未知状态: SUSPENDED")
        failed("badimage", "不是有效图片")
        failed("private", "结果地址不安全")
        failed("cancel_queued", "用户已取消任务")
        # Throttled, garbled, slow or running on every poll: the deadline ends it.
        failed("poll429", "上游限流(HTTP 429)")
        failed("garbage", "上游返回了无法解析的内容")
        failed("slowpoll", "上游接口超时")
        failed("hung", "任务超时")
        failed("gone", "HTTP 404")
        failed("html", "不是有效图片")
        failed("truncated", "不是有效图片")

        def seen(case: str) -> dict[str, Any]:
            return ok(admin.get(f"/admin/tasks/{numbers[case]}"))["task"]  # type: ignore[no-any-return]

        assert seen("cancel_queued")["upstreamStatus"] == "CANCELED"
        assert seen("cancel_running")["upstreamStatus"] == "SUCCEEDED"
        assert done["cancel_running"]["pointsRefunded"] == 0
        # The pictures DashScope billed: as many as asked (its own default is four).
        assert seen("plain")["upstreamUsage"] == {"image_count": 1}
        assert seen("four")["upstreamUsage"] == {"image_count": 4}
        assert seen("fewer")["upstreamUsage"] == {"image_count": 3}
        assert seen("moderated")["upstreamStatus"] == "FAILED"

        stats = httpx.get(sandbox + "/stats").json()
        assert stats["references"]["加上雪"] == [len(upload["url"])]  # sent as a URL
        accepted = {**stats["accepted"], **httpx.get(queue + "/stats").json()["accepted"]}
        prompts = {case: prompt for case, (_, prompt, _) in cases.items()}
        prompts.update({case: prompt for case, (prompt, _) in several.items()})
        # One upstream task for every task that reached DashScope, never two; none for the
        # 500, nor for the key it refused.
        for case in prompts.keys() - {"down"}:
            assert accepted[prompts[case]] == 1, (case, accepted)
        assert prompts["down"] not in accepted

        channels = {c["name"]: c for c in ok(admin.get("/admin/channels"))}
        refused_key = channels["百炼-坏密钥"]["keys"][0]
        assert refused_key["enabled"] is False and "鉴权失败" in refused_key["disabledReason"]
        assert channels["百炼"]["uncertainCount"] == 1  # lost
        # Charged: plain, throttled, four, the three pictures of fewer, the one whose cancel
        # DashScope refused, and the edit.
        assert user.balance() == 1000 - 20 * (1 + 1 + 4 + 3 + 1) - 30
        logs = "".join(p.log_text() for p in platform.processes)
        for secret in (key, queue_key, wrong_key):
            assert secret not in logs
        platform.audit()


def test_make_runs_demo_serves_wanx_through_the_sandbox(tmp_path: Path) -> None:
    """`make run` (`shengtu demo`, no upstream key): wanx-t2i, served by the built-in
    sandbox's DashScope double, with its sizes and up to four pictures."""
    platform = Platform(tmp_path).start()
    try:
        cli(platform.env, "demo")
        user = platform.new_user(points=100)
        models = {m["modelName"]: m for m in ok(user.client.get("/user/ai/models"))}
        offered = models["wanx-t2i"]["parameters"]
        assert offered["choices"]["size"]["values"] == list(SIZES) and offered["maxN"] == 4
        answer = user.submit(
            modelName="wanx-t2i", prompt="演示万相", n=2, parameters={"size": "1280x720"}
        )
        assert answer["code"] == 200, answer
        task = user.wait(answer["data"]["taskNo"])
        assert task["status"] == "completed" and len(task["resultUrls"]) == 2, task
        size = Image.open(io.BytesIO(httpx.get(task["resultUrls"][1]).content)).size
        assert size == drawn(1344, 768)
        assert user.balance() == 100 - 2 * 20
    finally:
        platform.stop()
