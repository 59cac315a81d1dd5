"""可灵 (Kling) upstreams (issue 23): a channel speaking Kling's image API, against the
sandbox's double of it (which checks each request's JWT for real), with every fault kind,
several pictures and a partial result, a wrong secret and a half key refused, on SQLite,
MariaDB and PostgreSQL; and the demo's kling-image, served by the built-in sandbox."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
from PIL import Image

from shengtu.providers.kling import KEY_FORMAT
from tests.support import Platform, cli, drawn, png

KLING = "kling-v15"
PARAMETERS = {
    "choices": {
        "aspectRatio": {
            "values": ["1:1", "16:9", "9:16"],
            "default": "1:1",
            "upstream": "aspect_ratio",
        }
    },
    "maxN": 4,
    "maxReferences": 1,
}
# The first part of every token we mint: base64url of {"alg":"HS256","typ":"JWT"}.
TOKEN_HEAD = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"


def size_of(url: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(httpx.get(url).content)).size  # type: ignore[no-any-return]


def test_kling_channels_with_every_fault(own_platform: Callable[..., Platform]) -> None:
    with own_platform(
        SHENGTU_MAX_INFLIGHT_TASKS="50",
        SHENGTU_TASK_DEADLINE="8",
        SHENGTU_SUBMIT_ATTEMPTS="2",
        SHENGTU_LATE_RESULTS="false",
    ) as platform:
        admin = platform.admin_client
        access, secret = "AK" + secrets.token_hex(15), "SK" + secrets.token_hex(15)
        sandbox, key = platform.sandbox_upstream(f"{access}:{secret}")
        made = admin.post(
            "/admin/models",
            json={
                "modelName": KLING,
                "description": "可灵 v1.5",
                "pointsCost": 20,
                "taskType": "both",
                "upstreamModel": "kling-v1-5",
                "parameters": PARAMETERS,
            },
        ).json()
        assert made["code"] == 200, made
        models = [
            {
                "modelName": KLING,
                "upstreamModel": "kling-v1-5",
                "upstreamParams": {"image_reference": "subject"},
            }
        ]

        def channel(name: str, channel_key: str, **body: Any) -> int:
            return int(
                platform.add_channel(
                    settle=False,
                    name=name,
                    protocol="kling",
                    baseUrl=sandbox + "/kling",
                    addKeys=[channel_key],
                    models=models,
                    **body,
                )["id"]
            )

        def tested(channel_id: int) -> dict[str, Any]:
            return admin.post(f"/admin/channels/{channel_id}/test").json()["data"]  # type: ignore[no-any-return]

        # Before the good one: a key of the right access key and a wrong secret, and a key
        # without its secret half.
        wrong = channel("可灵-错误密钥", f"{access}:{'x' * 32}", priority=9)
        half = channel("可灵-半个密钥", access, priority=8)
        good = channel("可灵", key, timeoutSeconds=2)
        refused = tested(wrong)
        assert refused["ok"] is False
        assert refused["message"].startswith("上游鉴权失败,请检查可灵的 AccessKey 与 SecretKey")
        assert "code 1000" in refused["message"]
        halved = tested(half)
        assert halved["ok"] is False and halved["message"] == KEY_FORMAT
        assert tested(good)["ok"] is True
        time.sleep(1.2)  # workers re-read the channels every second

        user = platform.new_user(points=1000)
        upload = user.client.post(
            "/user/files/upload", files={"file": ("ref.png", png(), "image/png")}
        ).json()["data"]
        cases: dict[str, dict[str, Any]] = {
            "plain": {"prompt": "一片森林", "parameters": {"aspectRatio": "16:9"}},
            "several": {"prompt": "三只猫", "n": 3, "parameters": {"aspectRatio": "9:16"}},
            "fewer": {"prompt": "少一张 [sandbox:fewer]", "n": 4},
            "edit": {"prompt": "加上雪", "imageUrl": upload["url"]},
            "throttled": {"prompt": "限流 [sandbox:submit429]"},
            "poll429": {"prompt": "查询限流 [sandbox:poll429]"},
            "moderated": {"prompt": "违规 [sandbox:fail]"},
            "down": {"prompt": "故障 [sandbox:error500]"},
            "lost": {"prompt": "回答丢失 [sandbox:slowsubmit]"},
            "unknown": {"prompt": "未知状态 [sandbox:status7]"},
            "garbage": {"prompt": "查询乱码 [sandbox:garbage]"},
            "slowpoll": {"prompt": "查询超时 [sandbox:slowpoll]"},
            "hung": {"prompt": "不结束 [sandbox:timeout]"},
            "badimage": {"prompt": "坏图 [sandbox:badimage]"},
            "private": {"prompt": "跳转内网 [sandbox:redirectprivate]"},
            "gone": {"prompt": "结果过期 [sandbox:result404]"},
        }
        numbers = {}
        for case, body in cases.items():
            answer = user.submit(modelName=KLING, **body)
            assert answer["code"] == 200, (case, answer)
            numbers[case] = answer["data"]["taskNo"]
        done = {case: user.wait(n, timeout=40) for case, n in numbers.items()}

        for case in ("plain", "several", "fewer", "edit", "throttled"):
            assert done[case]["status"] == "completed", (case, done[case])
        assert size_of(done["plain"]["resultUrl"]) == drawn(1344, 768)
        several = done["several"]
        assert several["delivered"] == 3 and len(set(several["resultUrls"])) == 3
        assert {size_of(url) for url in several["resultUrls"]} == {drawn(768, 1344)}
        # Four asked, three made: the fourth refunded.
        fewer = done["fewer"]
        assert fewer["delivered"] == 3 and len(fewer["resultUrls"]) == 3
        assert fewer["pointsRefunded"] == 20
        assert size_of(done["edit"]["resultUrl"]) == drawn(1024, 1024)

        def failed(case: str, words: str) -> None:
            task = done[case]
            assert task["status"] == "failed" and words in task["errorMessage"], (case, task)

        # Kling's moderation, as its own reason.
        assert done["moderated"]["errorMessage"].startswith("内容审核未通过:"), done["moderated"]
        failed("moderated", "Failure to pass the risk control system")
        failed("down", "上游服务内部错误(code 5000")
        failed("lost", "无法确认上游是否已接受任务")
        failed("unknown", "上游返回未知状态")
        failed("garbage", "上游返回了无法解析的内容")
        failed("slowpoll", "上游接口超时")
        failed("poll429", "上游限流")
        failed("hung", "任务超时")
        failed("badimage", "不是有效图片")
        failed("private", "结果地址不安全")
        failed("gone", "HTTP 404")

        stats = httpx.get(sandbox + "/stats").json()
        # The reference went as the upload's URL, with the channel's image_reference (the
        # double refuses kling-v1-5 with a reference and none).
        assert stats["references"]["加上雪"] == [len(upload["url"])]
        # One Kling task for each of ours that reached it; none for the 500.
        accepted = stats["accepted"]
        for case in cases.keys() - {"down"}:
            assert accepted[cases[case]["prompt"]] == 1, (case, accepted)
        assert cases["down"]["prompt"] not in accepted

        shown = {c["name"]: c for c in admin.get("/admin/channels").json()["data"]}
        assert shown["可灵"]["uncertainCount"] == 1
        wrong_key, half_key = shown["可灵-错误密钥"]["keys"][0], shown["可灵-半个密钥"]["keys"][0]
        assert wrong_key["enabled"] is False and "code 1000" in wrong_key["disabledReason"]
        assert half_key["enabled"] is False and "可灵密钥格式错误" in half_key["disabledReason"]
        tries = admin.get(f"/admin/tasks/{numbers['plain']}/attempts").json()["data"]
        outcomes = [(t["channelName"], t["outcome"]) for t in tries]
        assert outcomes[-1] == ("可灵", "accepted") and all(
            outcome == "key_rejected" for _, outcome in outcomes[:-1]
        ), outcomes

        # Charged: 1 + 3 + 3 (of 4) + 1 + 1 pictures at 20; everything else refunded.
        assert user.balance() == 1000 - 20 * 9

        # `make run`'s kling-image, served by the built-in sandbox's Kling double.
        assert "demo" in cli(platform.env, "demo").stdout
        demo = user.submit(
            modelName="kling-image", prompt="演示可灵", n=2, parameters={"aspectRatio": "3:4"}
        )
        assert demo["code"] == 200, demo
        demo_edit = user.submit(
            modelName="kling-image", prompt="演示可灵改图", imageUrl=upload["url"]
        )
        assert demo_edit["code"] == 200, demo_edit
        shown_demo = user.wait(demo["data"]["taskNo"])
        assert shown_demo["status"] == "completed" and shown_demo["delivered"] == 2, shown_demo
        assert {size_of(url) for url in shown_demo["resultUrls"]} == {drawn(896, 1152)}
        assert user.wait(demo_edit["data"]["taskNo"])["status"] == "completed"
        assert user.balance() == 1000 - 20 * 9 - 20 * 3

        logs = "".join(p.log_text() for p in platform.processes)
        for words in (key, secret, TOKEN_HEAD):
            assert words not in logs, words
        platform.audit()
