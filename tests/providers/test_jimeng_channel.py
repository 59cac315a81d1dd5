"""即梦 upstreams (issue 23): tasks submitted and their results asked for through a
``jimeng`` channel, every request signed and checked by the sandbox's double, with every
fault kind, on every database."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
from PIL import Image

from tests.support import Platform, drawn, ok, png

T2I, I2I, LINKED = "jimeng-t2i", "jimeng-i2i", "jimeng-link"
SIZES = ["1328x1328", "1472x1104", "1104x1472"]


def add_models(platform: Platform) -> None:
    """The catalog models of the test: text to image with sizes and up to 2 pictures a
    task (20 each), image to image (30), and text to image whose results come as URLs."""
    admin = platform.admin_client
    for name, task_type, cost, parameters in (
        (
            T2I,
            "text_to_image",
            20,
            {"choices": {"size": {"values": SIZES, "default": SIZES[0]}}, "maxN": 2},
        ),
        (I2I, "image_to_image", 30, {}),
        (LINKED, "text_to_image", 20, {}),
    ):
        made = admin.post(
            "/admin/models",
            json={
                "modelName": name,
                "description": name,
                "pointsCost": cost,
                "taskType": task_type,
                "upstreamModel": "jimeng_t2i_v31",
                "parameters": parameters,
            },
        ).json()
        assert made["code"] == 200, made


def channel_models() -> list[dict[str, Any]]:
    return [
        {"modelName": T2I, "upstreamModel": "jimeng_t2i_v31"},
        {"modelName": I2I, "upstreamModel": "jimeng_i2i_v30", "upstreamParams": {"scale": 0.5}},
        {
            "modelName": LINKED,
            "upstreamModel": "jimeng_t2i_v31",
            "upstreamParams": {"return_url": True},
        },
    ]


def test_jimeng_channels_signed_with_every_fault(own_platform: Callable[..., Platform]) -> None:
    with own_platform(
        SHENGTU_MAX_INFLIGHT_TASKS="50",
        SHENGTU_TASK_DEADLINE="8",
        SHENGTU_SUBMIT_ATTEMPTS="2",
        SHENGTU_LATE_RESULTS="false",
    ) as platform:
        admin = platform.admin_client
        access, secret = "AKLT" + secrets.token_hex(10), secrets.token_urlsafe(30)
        sandbox, key = platform.sandbox_upstream(f"{access}:{secret}")
        base_url = sandbox + "/jimeng"
        add_models(platform)
        # Ahead of the right one: a channel whose secret is wrong (its every request fails
        # the double's signature check), and one whose key is not a pair at all.
        wrong_id = platform.add_channel(
            settle=False,
            name="即梦-错误密钥",
            protocol="jimeng",
            baseUrl=base_url,
            addKeys=[f"{access}:{secret[:-2]}xy"],
            priority=10,
            models=channel_models(),
        )["id"]
        malformed_id = platform.add_channel(
            settle=False,
            name="即梦-格式错误",
            protocol="jimeng",
            baseUrl=base_url,
            addKeys=["sk-" + secrets.token_hex(12)],
            priority=5,
            models=channel_models(),
        )["id"]
        channel_id = platform.add_channel(
            settle=False,
            name="即梦",
            protocol="jimeng",
            baseUrl=base_url,
            addKeys=[key],
            timeoutSeconds=2,
            models=channel_models(),
        )["id"]
        tested = {
            cid: ok(admin.post(f"/admin/channels/{cid}/test"))
            for cid in (wrong_id, malformed_id, channel_id)
        }
        assert tested[channel_id]["ok"] is True, tested
        assert tested[wrong_id]["ok"] is False
        assert "SignatureDoesNotMatch" in tested[wrong_id]["message"]
        assert tested[malformed_id]["ok"] is False
        assert "AccessKeyID:SecretAccessKey" in tested[malformed_id]["message"]
        time.sleep(1.2)  # workers re-read the channels every second

        user = platform.new_user(points=1000)
        upload = ok(
            user.client.post("/user/files/upload", files={"file": ("ref.png", png(), "image/png")})
        )
        cases: dict[str, tuple[str, str, str | None]] = {
            "plain": (T2I, "一片森林", None),
            "edit": (I2I, "加上雪", upload["url"]),
            "linked": (LINKED, "一座桥", None),
            "throttled": (T2I, "限流 [sandbox:submit429]", None),
            "poll429": (T2I, "查询限流 [sandbox:poll429]", None),
            "moderated": (T2I, "违规 [sandbox:fail]", None),
            "moderated_ref": (I2I, "违规参考图 [sandbox:fail]", upload["url"]),
            "down": (T2I, "故障 [sandbox:error500]", None),
            "lost": (T2I, "回答丢失 [sandbox:slowsubmit]", None),
            "never": (T2I, "永不完成 [sandbox:timeout]", None),
            "unknown": (T2I, "未知状态 [sandbox:status7]", None),
            "garbage": (T2I, "查询乱码 [sandbox:garbage]", None),
            "slowpoll": (T2I, "查询超时 [sandbox:slowpoll]", None),
            "badimage": (T2I, "坏图 [sandbox:badimage]", None),
            "truncated": (T2I, "半张图 [sandbox:truncated]", None),
            "gone": (LINKED, "结果过期 [sandbox:result404]", None),
            "private": (LINKED, "跳转内网 [sandbox:redirectprivate]", None),
            "html": (LINKED, "网页 [sandbox:html]", None),
        }
        numbers = user.submit_all(cases)
        portrait = user.submit(modelName=T2I, prompt="竖幅山水", parameters={"size": "1104x1472"})
        assert portrait["code"] == 200, portrait
        numbers["portrait"] = portrait["data"]["taskNo"]
        two = user.submit(modelName=T2I, prompt="两只猫", n=2)
        assert two["code"] == 200 and two["data"]["pointsCost"] == 40, two
        numbers["two"] = two["data"]["taskNo"]

        done = {case: user.wait(n, timeout=40) for case, n in numbers.items()}
        for case in ("plain", "edit", "linked", "throttled", "portrait", "two"):
            assert done[case]["status"] == "completed", (case, done[case])
        sizes = {
            case: Image.open(io.BytesIO(httpx.get(done[case]["resultUrl"]).content)).size
            for case in ("plain", "edit", "linked", "portrait")
        }
        # The nearest ratio the sandbox draws: 1328x1328 square, 1104x1472 3:4.
        assert sizes == {
            "plain": drawn(1024, 1024),
            "edit": drawn(1024, 1024),
            "linked": drawn(1024, 1024),
            "portrait": drawn(896, 1152),
        }
        # A job makes one picture: a task of two gets one and half its points back.
        assert done["two"]["delivered"] == 1 and len(done["two"]["resultUrls"]) == 1
        assert done["two"]["pointsRefunded"] == 20
        detail = ok(admin.get(f"/admin/tasks/{numbers['plain']}"))["task"]
        assert detail["upstreamUsage"] == {"image_count": 1}
        assert detail["upstreamId"].startswith("jimeng_t2i_v31:image_")
        assert detail["channelId"] == channel_id
        linked = ok(admin.get(f"/admin/tasks/{numbers['linked']}"))["task"]
        assert linked["upstreamId"].endswith(":url")

        def failed(case: str, words: str) -> None:
            task = done[case]
            assert task["status"] == "failed" and words in task["errorMessage"], (case, task)

        # Refused for its content: said so as its own reason, first thing.
        failed("moderated", "内容审核未通过:")
        assert done["moderated"]["errorMessage"].startswith("内容审核未通过:")
        failed("moderated_ref", "内容审核未通过:上游判定输入图片不合规")
        failed("down", "上游服务错误(50500 内部错误)")
        failed("lost", "无法确认上游是否已接受任务")
        failed("never", "任务超时")
        # Throttled, garbled or slow on every poll: the deadline ends it, saying why.
        failed("poll429", "上游限流(50430 并发超限)")
        failed("unknown", "上游返回未知状态")
        failed("garbage", "上游返回了无法解析的内容")
        failed("slowpoll", "上游接口超时")
        failed("badimage", "不是有效图片")
        failed("truncated", "不是有效图片")
        failed("gone", "HTTP 404")
        failed("private", "结果地址不安全")
        failed("html", "不是有效图片")

        stats = httpx.get(sandbox + "/stats").json()
        assert stats["references"]["加上雪"] == [len(upload["url"])]  # sent as a URL
        accepted = stats["accepted"]
        prompts = {case: prompt for case, (_, prompt, _) in cases.items()}
        prompts.update(portrait="竖幅山水", two="两只猫")
        # One upstream job per task; none for those refused at the submit.
        for case, prompt in prompts.items():
            if case in ("down", "moderated_ref"):
                assert prompt not in accepted, (case, accepted)
            else:
                assert accepted[prompt] == 1, (case, accepted)
        channels = {c["id"]: c for c in ok(admin.get("/admin/channels"))}
        # The first task through each wrong key disabled it; the rest went on to the right one.
        for cid in (wrong_id, malformed_id):
            (refused,) = channels[cid]["keys"]
            assert refused["enabled"] is False and refused["disabledReason"], refused
        assert "SignatureDoesNotMatch" in channels[wrong_id]["keys"][0]["disabledReason"]
        assert channels[channel_id]["uncertainCount"] == 1
        # Charged: the six completed (the task of two for the one picture it got).
        assert user.balance() == 1000 - (20 + 30 + 20 + 20 + 20 + 20)
        logs = "".join(p.log_text() for p in platform.processes)
        for secret_part in (key, secret, access):
            assert secret_part not in logs
        platform.audit()


def test_a_late_inline_picture_is_kept(own_platform: Callable[..., Platform]) -> None:
    """A job done after its task's deadline: its picture, inline in the answer, is still
    stored as the failed, refunded task's late result."""
    with own_platform(
        SHENGTU_TASK_DEADLINE="2", SHENGTU_LATE_POLL_SECONDS="0.5", SHENGTU_LATE_RESULTS="true"
    ) as platform:
        key = f"AKLT{secrets.token_hex(10)}:{secrets.token_urlsafe(30)}"
        # An upstream that takes 4 s for a picture: longer than the tasks' deadline.
        sandbox, key = platform.sandbox_upstream(
            key, env={**platform.env, "SHENGTU_SANDBOX_LATENCY": "4"}
        )
        add_models(platform)
        made = platform.add_channel(
            name="即梦-慢",
            protocol="jimeng",
            baseUrl=sandbox + "/jimeng",
            addKeys=[key],
            models=channel_models(),
        )
        user = platform.new_user(points=20)
        task_no = user.submit(modelName=T2I, prompt="来得太晚的即梦")["data"]["taskNo"]
        failed = user.wait(task_no)
        assert failed["status"] == "failed" and "任务超时" in failed["errorMessage"], failed
        assert user.balance() == 20
        task = wait_for_late(user, task_no)
        picture = httpx.get(str(task["lateResultUrl"]))
        assert Image.open(io.BytesIO(picture.content)).size == drawn(1024, 1024)
        assert task["status"] == "failed" and user.balance() == 20
        channel = ok(platform.admin_client.get(f"/admin/channels/{made['id']}"))
        assert channel["lateCount"] == 1
        platform.audit()


def wait_for_late(user: Any, task_no: str) -> dict[str, Any]:
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        task: dict[str, Any] = user.task(task_no)
        if task["lateResultUrl"] is not None:
            return task
        time.sleep(0.3)
    raise AssertionError(f"no late result: {task}")
