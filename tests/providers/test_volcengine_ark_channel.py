"""Volcengine Ark (Seedream) upstreams (issue 23): channels speaking it, against the
sandbox's double over real HTTP, with every fault kind it can show, sets and partial sets,
on SQLite, MariaDB and PostgreSQL; and the demo's seedream-4 in `make run`."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from PIL import Image

from tests.support import Platform, User, cli, drawn, png, wait_for

MODEL = "seedream-test"
SEEDREAM = "doubao-seedream-4-0-250828"
# 30 points a 2K picture; 1K × 0.8, 4K × 2.
PARAMETERS = {
    "choices": {
        "resolution": {"values": ["1K", "2K", "4K"], "default": "2K", "upstream": "size"},
    },
    "maxN": 4,
    "maxReferences": 10,
}
PRICE = {"choices": {"resolution": {"1K": {"times": "0.8"}, "4K": {"times": "2"}}}}


def ark_key() -> str:
    return f"ark-{uuid.uuid4()}-{uuid.uuid4().hex[:5]}"


def add_seedream_model(platform: Platform) -> None:
    made = platform.admin_client.post(
        "/admin/models",
        json={
            "modelName": MODEL,
            "description": "Seedream 4.0",
            "pointsCost": 30,
            "taskType": "both",
            "upstreamModel": SEEDREAM,
            "parameters": PARAMETERS,
            "priceRule": PRICE,
        },
    ).json()
    assert made["code"] == 200, made


def submit(user: User, prompt: str, **body: Any) -> str:
    answer = user.submit(modelName=MODEL, prompt=prompt, **body)
    assert answer["code"] == 200, (prompt, answer)
    return str(answer["data"]["taskNo"])


def test_volcengine_ark_channels_with_every_fault_sets_and_partial_sets(
    own_platform: Callable[..., Platform],
) -> None:
    with own_platform(
        SHENGTU_MAX_INFLIGHT_TASKS="50",
        SHENGTU_TASK_DEADLINE="30",
        SHENGTU_SUBMIT_ATTEMPTS="2",
    ) as platform:
        admin = platform.admin_client
        sandbox, key = platform.sandbox_upstream(ark_key())
        add_seedream_model(platform)
        wrong_key = ark_key()

        def channel(name: str, api_key: str, upstream_model: str, **body: Any) -> int:
            return int(
                platform.add_channel(
                    settle=False,
                    name=name,
                    protocol="volcengine_ark",
                    baseUrl=sandbox,
                    addKeys=[api_key],
                    models=[{"modelName": MODEL, "upstreamModel": upstream_model}],
                    **body,
                )["id"]
            )

        # First by priority, a key Ark refuses; then an account without the model (404:
        # certainly nothing made, the next channel); then the good one.
        refused_key = channel("方舟-坏密钥", wrong_key, SEEDREAM, priority=9)
        no_model = channel("方舟-无此模型", key, "doubao-seedream-9-9-000000", priority=5)
        good = channel("方舟", key, SEEDREAM, timeoutSeconds=2)
        assert admin.get(f"/admin/channels/{good}").json()["data"]["timeoutSeconds"] == 2
        assert admin.get(f"/admin/channels/{no_model}").json()["data"]["timeoutSeconds"] == 600

        tested = admin.post(f"/admin/channels/{good}/test").json()["data"]
        assert tested["ok"] is True, tested
        tested = admin.post(f"/admin/channels/{refused_key}/test").json()["data"]
        assert tested["ok"] is False and "鉴权失败" in tested["message"], tested
        time.sleep(1.2)  # workers re-read the channels every second

        user = platform.new_user(points=2000)
        uploads = [
            user.client.post(
                "/user/files/upload", files={"file": (f"ref{i}.png", png(), "image/png")}
            ).json()["data"]
            for i in range(3)
        ]
        urls = [u["url"] for u in uploads]
        cases: dict[str, tuple[str, dict[str, Any]]] = {
            "plain": ("一片森林", {}),
            "small": ("一朵花", {"parameters": {"resolution": "1K"}}),
            "edit": ("加上雪", {"imageUrl": urls[0]}),
            "blend": ("把三张图融合", {"imageUrl": urls}),
            "set": ("四季的同一棵树", {"n": 4, "parameters": {"resolution": "4K"}}),
            "partial": ("一组四张 [sandbox:fewer]", {"n": 4}),
            "one_refused": ("一组有一张被拦 [sandbox:badimage]", {"n": 4}),
            "throttled": ("限流后成功 [sandbox:submit429]", {}),
            "moderated": ("违规内容 [sandbox:fail]", {}),
            "down": ("上游故障 [sandbox:error500]", {}),
            "lost": ("回答丢失 [sandbox:slowsubmit]", {}),
            "hung": ("不回答 [sandbox:timeout]", {}),
            "garbage": ("乱码 [sandbox:garbage]", {}),
            "badimage": ("坏图 [sandbox:badimage]", {}),
            "private": ("跳转内网 [sandbox:redirectprivate]", {}),
            "gone": ("结果过期 [sandbox:result404]", {}),
            "html": ("网页 [sandbox:html]", {}),
            "truncated": ("半张图 [sandbox:truncated]", {}),
        }
        numbers = {case: submit(user, prompt, **body) for case, (prompt, body) in cases.items()}
        done = {case: user.wait(n, timeout=60) for case, n in numbers.items()}

        def completed(case: str, pictures: int, delivered: int, each: int) -> dict[str, Any]:
            task = done[case]
            assert task["status"] == "completed", (case, task)
            assert (task["pictures"], task["delivered"]) == (pictures, delivered), (case, task)
            assert task["pointsCost"] == pictures * each, (case, task)
            assert task["pointsRefunded"] == (pictures - delivered) * each, (case, task)
            assert len(task["resultUrls"]) == delivered, (case, task)
            for url in task["resultUrls"]:
                picture = httpx.get(url)
                assert picture.headers["content-type"] == "image/png", (case, url)
                # 1K/2K/4K: Seedream picks the shape; the double draws a square.
                assert Image.open(io.BytesIO(picture.content)).size == drawn(1024, 1024)
            return task

        completed("plain", 1, 1, 30)
        completed("small", 1, 1, 24)
        completed("edit", 1, 1, 30)
        completed("blend", 1, 1, 30)
        completed("set", 4, 4, 60)
        completed("throttled", 1, 1, 30)
        # Seedream made 3 of the 4 asked: the missing one is refunded at its price.
        partial = completed("partial", 4, 3, 30)
        assert len(set(partial["resultUrls"])) == 3
        completed("one_refused", 4, 3, 30)

        def failed(case: str, words: str) -> None:
            task = done[case]
            assert task["status"] == "failed" and words in task["errorMessage"], (case, task)
            assert task["pointsRefunded"] == task["pointsCost"], (case, task)

        # A moderation says so as its own reason, apart from an outage.
        failed("moderated", "内容审核未通过:上游判定生成的图片含敏感内容")
        failed("down", "上游服务错误(HTTP 500)(InternalServiceError)")
        failed("lost", "无法确认上游是否已接受任务")
        failed("hung", "无法确认上游是否已接受任务")
        failed("garbage", "无法确认上游是否已接受任务")
        failed("badimage", "不是有效图片")
        failed("private", "结果地址不安全")
        failed("gone", "HTTP 404")
        failed("html", "不是有效图片")
        failed("truncated", "不是有效图片")
        assert "内容审核未通过" not in done["down"]["errorMessage"]

        stats = httpx.get(sandbox + "/stats").json()
        # Reference pictures go as the platform's own public URLs, one or a list.
        assert stats["references"]["加上雪"] == [len(urls[0])]
        assert stats["references"]["把三张图融合"] == [len(u) for u in urls]
        # One upstream job for every task that reached Seedream's generation, never two:
        # none for the 500s and the throttled first try; the refused key and the missing
        # model made none either.
        accepted = stats["accepted"]
        for case in cases.keys() - {"down"}:
            assert accepted[cases[case][0]] == 1, (case, accepted)
        assert cases["down"][0] not in accepted

        # The upstream's usage is the task's cost basis: Ark's own figures.
        detail = admin.get(f"/admin/tasks/{numbers['set']}").json()["data"]["task"]
        assert detail["upstreamUsage"] == {
            "generated_images": 4,
            "output_tokens": 4 * 4096 * 4096 // 256,
            "total_tokens": 4 * 4096 * 4096 // 256,
        }
        assert detail["upstreamId"].startswith("ark-02")
        detail = admin.get(f"/admin/tasks/{numbers['partial']}").json()["data"]["task"]
        assert detail["upstreamUsage"]["generated_images"] == 3
        assert detail["upstreamStatus"] == "partial"

        channels = {c["name"]: c for c in admin.get("/admin/channels").json()["data"]}
        bad = channels["方舟-坏密钥"]["keys"][0]
        assert bad["enabled"] is False and "鉴权失败" in bad["disabledReason"], bad
        assert channels["方舟-无此模型"]["keys"][0]["enabled"] is True
        assert channels["方舟"]["uncertainCount"] == 3  # lost, hung and garbage
        tries = admin.get(f"/admin/tasks/{numbers['plain']}/attempts").json()["data"]
        outcomes = [(t["channelName"], t["outcome"]) for t in tries]
        assert outcomes[-1] == ("方舟", "accepted"), outcomes
        for name, outcome in outcomes[:-1]:
            assert (name, outcome) in (("方舟-坏密钥", "key_rejected"), ("方舟-无此模型", "failed"))
        missing = [t for t in tries if t["channelName"] == "方舟-无此模型"]
        for attempt in missing:
            assert attempt["httpStatus"] == 404, attempt
            assert "InvalidEndpointOrModel.NotFound" in attempt["error"], attempt
        moderated = admin.get(f"/admin/tasks/{numbers['moderated']}/attempts").json()["data"]
        assert moderated[-1]["outcome"] == "refused" and moderated[-1]["httpStatus"] == 400

        charged = 30 + 24 + 30 + 30 + 4 * 60 + 30 + 3 * 30 + 3 * 30
        assert user.balance() == 2000 - charged
        text = "".join(p.log_text() for p in platform.processes)
        assert key not in text and wrong_key not in text
        platform.audit()

        # `make run`: the demo's seedream-4, served by the built-in sandbox's double.
        cli(platform.env, "demo")
        demo_user = platform.new_user(points=100)

        def listed() -> dict[str, Any]:
            models = demo_user.client.get("/user/ai/models").json()["data"]
            return {m["modelName"]: m for m in models}

        # The API process sees a catalog change within 5 s.
        seedream = wait_for("seedream-4 listed", lambda: listed().get("seedream-4"), 10)
        assert seedream["parameters"]["maxN"] == 4, seedream
        task = demo_user.submit(modelName="seedream-4", prompt="演示 Seedream", n=2)
        assert task["code"] == 200 and task["data"]["pointsCost"] == 60, task
        shown = demo_user.wait(task["data"]["taskNo"], timeout=60)
        assert shown["status"] == "completed" and shown["delivered"] == 2, shown
        assert demo_user.balance() == 100 - 60
        platform.audit()
