"""OpenAI Images API upstreams (issue 12): a channel speaking it, against the sandbox's
double of it, with every fault kind, on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from shengtu.catalog.demo import DEMO_MODELS
from tests.support import OPENAI_MODELS, Platform, cli, drawn, png

TEXT, URL_MODEL, EDIT = OPENAI_MODELS


def test_openai_images_channels_with_every_fault(own_platform: Callable[..., Platform]) -> None:
    with own_platform(
        SHENGTU_MAX_INFLIGHT_TASKS="50",
        SHENGTU_TASK_DEADLINE="30",
        SHENGTU_SUBMIT_ATTEMPTS="2",
    ) as platform:
        admin = platform.admin_client
        sandbox, key = platform.openai_sandbox()
        models = [
            {
                "modelName": TEXT,
                "upstreamModel": "gpt-image-1",
                "upstreamParams": {"size": "1024x1024"},
            },
            {
                "modelName": URL_MODEL,
                "upstreamModel": "gpt-image-1",
                "upstreamParams": {"size": "1536x1024", "response_format": "url"},
            },
            {"modelName": EDIT, "upstreamModel": "gpt-image-1", "upstreamParams": {}},
        ]

        def channel(**body: Any) -> dict[str, Any]:
            return platform.add_channel(
                settle=False, protocol="openai_images", baseUrl=sandbox, models=models, **body
            )

        # A relay whose key the upstream refuses, first by priority; the good one after.
        wrong = channel(
            name="中转-坏密钥", addKeys=["sk-wrong-" + secrets.token_hex(6)], priority=9
        )
        good = channel(name="OpenAI", addKeys=[key], timeoutSeconds=2)
        assert good["timeoutSeconds"] == 2 and wrong["timeoutSeconds"] == 300
        assert admin.post(f"/admin/channels/{good['id']}/test").json()["data"]["ok"] is True
        time.sleep(1.2)  # workers re-read the channels every second

        user = platform.new_user(points=1000)
        upload = user.client.post(
            "/user/files/upload", files={"file": ("ref.png", png(), "image/png")}
        ).json()["data"]
        cases = {
            "inline": (TEXT, "一只猫", None),
            "url": (URL_MODEL, "一座山", None),
            "edit": (EDIT, "改成夜景", upload["url"]),
            "throttled": (TEXT, "限流后成功 [sandbox:submit429]", None),
            "refused": (TEXT, "违规内容 [sandbox:fail]", None),
            "down": (TEXT, "上游故障 [sandbox:error500]", None),
            "lost": (TEXT, "回答丢失 [sandbox:slowsubmit]", None),
            "garbage": (TEXT, "乱码 [sandbox:garbage]", None),
            "badimage": (TEXT, "坏图 [sandbox:badimage]", None),
            "private": (URL_MODEL, "跳转内网 [sandbox:redirectprivate]", None),
            "hung": (TEXT, "不回答 [sandbox:timeout]", None),
            "truncated": (TEXT, "半张图 [sandbox:truncated]", None),
            "gone": (URL_MODEL, "结果过期 [sandbox:result404]", None),
            "html": (URL_MODEL, "网页 [sandbox:html]", None),
        }
        numbers = user.submit_all(cases)
        done = {case: user.wait(n, timeout=40) for case, n in numbers.items()}

        for case in ("inline", "url", "edit", "throttled"):
            task = done[case]
            assert task["status"] == "completed", (case, task)
            picture = httpx.get(task["resultUrl"])
            assert picture.headers["content-type"] == "image/png"
            width, height = Image.open(io.BytesIO(picture.content)).size
            assert (width, height) == (drawn(1536, 1024) if case == "url" else drawn(1024, 1024)), (
                case
            )
        stats = httpx.get(sandbox + "/stats").json()
        # The edit carried the user's upload as a file.
        assert stats["references"]["改成夜景"] == [upload["size"]]

        def failed(case: str, words: str) -> None:
            task = done[case]
            assert task["status"] == "failed" and words in task["errorMessage"], (case, task)

        failed("refused", "内容审核未通过:内容不符合上游的使用政策")
        failed("down", "上游服务错误(HTTP 500)")
        failed("lost", "无法确认上游是否已接受任务")
        failed("garbage", "无法确认上游是否已接受任务")
        failed("badimage", "不是有效图片")
        failed("private", "结果地址不安全")
        failed("hung", "无法确认上游是否已接受任务")
        failed("truncated", "不是有效图片")
        failed("gone", "HTTP 404")
        failed("html", "不是有效图片")
        accepted = stats["accepted"]
        # One upstream job for every task that reached the upstream's generation, never two;
        # none for the refusals, the 500s and the throttled first try.
        for case in cases.keys() - {"refused", "down"}:
            assert accepted[cases[case][1]] == 1, (case, accepted)
        for case in ("refused", "down"):
            assert cases[case][1] not in accepted, case

        channels = {c["name"]: c for c in admin.get("/admin/channels").json()["data"]}
        bad_key = channels["中转-坏密钥"]["keys"][0]
        assert bad_key["enabled"] is False and "鉴权失败" in bad_key["disabledReason"]
        assert channels["OpenAI"]["uncertainCount"] == 3  # lost, hung and garbage
        tries = admin.get(f"/admin/tasks/{numbers['inline']}/attempts").json()["data"]
        assert [(t["channelName"], t["outcome"]) for t in tries] in (
            [("中转-坏密钥", "key_rejected"), ("OpenAI", "accepted")],
            [("OpenAI", "accepted")],
        ), tries
        assert user.balance() == 1000 - 40 * 3 - 45
        text = "".join(p.log_text() for p in platform.processes)
        assert key not in text
        platform.audit()


def test_make_runs_demo_serves_every_demo_model_through_the_sandbox(tmp_path: Path) -> None:
    """`make run` (`shengtu demo`, no upstream key): the catalog gains gpt-image-1, its
    edit model, flux-schnell and jimeng-t2i, and the built-in sandbox serves them over the
    OpenAI, Replicate and 即梦 protocols."""
    platform = Platform(tmp_path).start()
    try:
        assert "demo" in cli(platform.env, "demo").stdout
        cli(platform.env, "demo")  # twice: nothing added twice
        user = platform.new_user(points=200)
        names = [m["modelName"] for m in user.client.get("/user/ai/models").json()["data"]]
        # The spec's eight, then every demo model (one per protocol), in order.
        assert names[8:11] == ["gpt-image-1", "gpt-image-1-edit", "flux-schnell"]
        assert names[8:] == [m["model_name"] for m in DEMO_MODELS]
        upload = user.client.post(
            "/user/files/upload", files={"file": ("ref.png", png(), "image/png")}
        ).json()["data"]
        text = user.submit(modelName="gpt-image-1", prompt="演示")["data"]["taskNo"]
        edit = user.submit(modelName="gpt-image-1-edit", prompt="演示改图", imageUrl=upload["url"])
        flux = user.submit(modelName="flux-schnell", prompt="演示 flux")["data"]["taskNo"]
        jimeng = user.submit(modelName="jimeng-t2i", prompt="演示即梦")["data"]["taskNo"]
        for task_no in (text, edit["data"]["taskNo"], flux, jimeng):
            task = user.wait(task_no)
            assert task["status"] == "completed", task
        assert user.balance() == 200 - 40 - 45 - 10 - 20
    finally:
        platform.stop()
