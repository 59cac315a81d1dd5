"""Replicate upstreams (issue 12): predictions created, polled and cancelled through a
channel, against the sandbox's double, with every fault kind, on every database."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable

import httpx
from PIL import Image

from tests.support import Platform, drawn, png

FLUX, FLUX_EDIT = "flux-schnell", "flux-kontext"


def test_replicate_channels_with_every_fault_and_cancel(
    own_platform: Callable[..., Platform],
) -> None:
    with own_platform(
        SHENGTU_MAX_INFLIGHT_TASKS="50",
        SHENGTU_TASK_DEADLINE="8",
        SHENGTU_SUBMIT_ATTEMPTS="2",
        SHENGTU_LATE_RESULTS="false",
    ) as platform:
        admin = platform.admin_client
        sandbox, key = platform.sandbox_upstream("r8_" + secrets.token_hex(12))
        for name, task_type in ((FLUX, "text_to_image"), (FLUX_EDIT, "image_to_image")):
            platform.add_model(name, task_type=task_type, cost=10, upstream_model=name)
        channel_id = platform.add_channel(
            settle=False,
            name="Replicate",
            protocol="replicate",
            baseUrl=sandbox,
            addKeys=[key],
            timeoutSeconds=2,
            models=[
                {
                    "modelName": FLUX,
                    "upstreamModel": "black-forest-labs/flux-schnell",
                    "upstreamParams": {"aspect_ratio": "3:2"},
                },
                {
                    "modelName": FLUX_EDIT,
                    "upstreamModel": "black-forest-labs/flux-kontext-pro",
                    "upstreamParams": {"imageField": "input_image"},
                },
            ],
        )["id"]
        assert admin.post(f"/admin/channels/{channel_id}/test").json()["data"]["ok"] is True
        time.sleep(1.2)  # workers re-read the channels every second

        user = platform.new_user(points=500)
        upload = user.client.post(
            "/user/files/upload", files={"file": ("ref.png", png(), "image/png")}
        ).json()["data"]
        cases: dict[str, tuple[str, str, str | None]] = {
            "plain": (FLUX, "一片森林", None),
            "edit": (FLUX_EDIT, "加上雪", upload["url"]),
            "throttled": (FLUX, "限流 [sandbox:submit429]", None),
            "poll429": (FLUX, "查询限流 [sandbox:poll429]", None),
            "nsfw": (FLUX, "违规 [sandbox:fail]", None),
            "down": (FLUX, "故障 [sandbox:error500]", None),
            "lost": (FLUX, "回答丢失 [sandbox:slowsubmit]", None),
            "unknown": (FLUX, "未知状态 [sandbox:status7]", None),
            "badimage": (FLUX, "坏图 [sandbox:badimage]", None),
            "private": (FLUX, "跳转内网 [sandbox:redirectprivate]", None),
            "cancel": (FLUX, "要取消的 [sandbox:timeout]", None),
            "garbage": (FLUX, "查询乱码 [sandbox:garbage]", None),
            "slowpoll": (FLUX, "查询超时 [sandbox:slowpoll]", None),
            "gone": (FLUX, "结果过期 [sandbox:result404]", None),
            "html": (FLUX, "网页 [sandbox:html]", None),
            "truncated": (FLUX, "半张图 [sandbox:truncated]", None),
        }
        numbers = user.submit_all(cases)

        # A cancel of a prediction the upstream accepted is passed on; the task then fails
        # with its points back.
        deadline = time.monotonic() + 10
        while user.task(numbers["cancel"])["status"] == "created":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        cancelled = user.client.post(f"/user/ai/tasks/{numbers['cancel']}/cancel").json()
        assert cancelled["code"] == 200, cancelled

        done = {case: user.wait(n, timeout=40) for case, n in numbers.items()}
        for case in ("plain", "edit", "throttled"):
            task = done[case]
            assert task["status"] == "completed", (case, task)
            picture = Image.open(io.BytesIO(httpx.get(task["resultUrl"]).content))
            assert picture.size == (drawn(1536, 1024) if case != "edit" else drawn(1024, 1024)), (
                case
            )

        def failed(case: str, words: str) -> None:
            task = done[case]
            assert task["status"] == "failed" and words in task["errorMessage"], (case, task)

        failed("nsfw", "内容审核未通过:内容不符合上游的使用政策")
        failed("down", "上游服务错误(HTTP 500)")
        failed("lost", "无法确认上游是否已接受任务")
        failed("unknown", "上游返回未知状态")
        failed("badimage", "不是有效图片")
        failed("private", "结果地址不安全")
        failed("cancel", "用户已取消任务")
        # Throttled, garbled or slow on every poll: the deadline ends it, saying why.
        failed("poll429", "上游限流(HTTP 429)")
        failed("garbage", "上游返回了无法解析的内容")
        failed("slowpoll", "上游接口超时")
        failed("gone", "HTTP 404")
        failed("html", "不是有效图片")
        failed("truncated", "不是有效图片")

        stats = httpx.get(sandbox + "/stats").json()
        assert stats["references"]["加上雪"] == [len(upload["url"])]  # sent as a URL
        accepted = stats["accepted"]
        for case in cases.keys() - {"down"}:
            assert accepted[cases[case][1]] == 1, (case, accepted)
        assert cases["down"][1] not in accepted
        shown = admin.get(f"/admin/channels/{channel_id}").json()["data"]
        assert shown["uncertainCount"] == 1
        # Charged: the 3 completed; everything else refunded, the cancelled one too.
        assert user.balance() == 500 - 10 * 3
        assert key not in "".join(p.log_text() for p in platform.processes)
        platform.audit()
