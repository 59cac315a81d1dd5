"""BFL (FLUX) upstreams (issue 23): tasks created and polled through channels, against the
sandbox's BFL double over real HTTP, with every fault kind, a wrong key and a key out of
credits, both moderation outcomes, and the 24 active tasks a key holds; on every database."""

from __future__ import annotations

import concurrent.futures
import io
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.support import Platform, cli, drawn, ok, png

PRO, KONTEXT, POOR = "flux-pro", "flux-kontext", "flux-poor"
ASPECT = {
    "choices": {
        "aspectRatio": {"values": ["1:1", "16:9"], "default": "1:1", "upstream": "aspect_ratio"}
    },
    "maxN": 3,
}


def bfl_models(*names: str) -> list[dict[str, Any]]:
    upstream = {PRO: "flux-pro-1.1", KONTEXT: "flux-kontext-pro", POOR: "flux-pro-1.1"}
    return [{"modelName": n, "upstreamModel": upstream[n]} for n in names]


def picture_size(url: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(httpx.get(url).content)).size


def test_bfl_channels_with_every_fault_a_wrong_key_and_no_credits(
    own_platform: Callable[..., Platform],
) -> None:
    with own_platform(
        SHENGTU_MAX_INFLIGHT_TASKS="50",
        SHENGTU_TASK_DEADLINE="8",
        SHENGTU_SUBMIT_ATTEMPTS="2",
        SHENGTU_LATE_RESULTS="false",
    ) as platform:
        admin = platform.admin_client
        good, poor = "bfl_" + secrets.token_hex(12), "bfl_nocredit_" + secrets.token_hex(8)
        sandbox, _ = platform.sandbox_upstream(f"{good},{poor}")
        base = sandbox + "/bfl"
        for name, task_type in (
            (PRO, "text_to_image"),
            (KONTEXT, "image_to_image"),
            (POOR, "text_to_image"),
        ):
            platform.add_model(name, task_type=task_type, cost=40, upstream_model=name)
        ok(admin.put(f"/admin/models/{PRO}", json={"parameters": ASPECT}))
        # Tried in this order: a wrong key, a key out of credits, then the good one.
        common = {"settle": False, "protocol": "bfl", "baseUrl": base}
        wrong_id = platform.add_channel(
            **common, name="BFL-坏密钥", addKeys=["bfl_wrong"], priority=10, models=bfl_models(PRO)
        )["id"]
        poor_id = platform.add_channel(
            **common, name="BFL-没余额", addKeys=[poor], priority=5, models=bfl_models(PRO, POOR)
        )["id"]
        made = platform.add_channel(
            **common, name="BFL", addKeys=[good], timeoutSeconds=2, models=bfl_models(PRO, KONTEXT)
        )
        good_id = made["id"]
        # BFL refuses a key's tasks beyond 24 running: a channel holds at most that many.
        assert made["keyInflight"] == 24
        tested = {
            cid: ok(admin.post(f"/admin/channels/{cid}/test"))
            for cid in (wrong_id, poor_id, good_id)
        }
        assert tested[good_id]["ok"] is True
        assert tested[wrong_id]["ok"] is False and "鉴权失败" in tested[wrong_id]["message"]
        assert tested[poor_id]["ok"] is False and tested[poor_id]["message"] == "上游账户余额不足"
        time.sleep(1.2)  # workers re-read the channels every second

        user = platform.new_user(points=2000)
        upload = user.client.post(
            "/user/files/upload", files={"file": ("ref.png", png(), "image/png")}
        ).json()["data"]
        cases: dict[str, tuple[str, str, str | None]] = {
            "plain": (PRO, "一片森林", None),
            "edit": (KONTEXT, "加上雪", upload["url"]),
            "throttled": (PRO, "限流 [sandbox:submit429]", None),
            "poll429": (PRO, "查询限流 [sandbox:poll429]", None),
            "content": (PRO, "违规图片 [sandbox:fail]", None),
            "request": (PRO, "违规请求 [sandbox:moderated]", None),
            "down": (PRO, "故障 [sandbox:error500]", None),
            "lost": (PRO, "回答丢失 [sandbox:slowsubmit]", None),
            "unknown": (PRO, "未知状态 [sandbox:status7]", None),
            "badimage": (PRO, "坏图 [sandbox:badimage]", None),
            "private": (PRO, "跳转内网 [sandbox:redirectprivate]", None),
            "garbage": (PRO, "查询乱码 [sandbox:garbage]", None),
            "slowpoll": (PRO, "查询超时 [sandbox:slowpoll]", None),
            "expired": (PRO, "结果过期 [sandbox:result404]", None),
            "html": (PRO, "网页 [sandbox:html]", None),
            "truncated": (PRO, "半张图 [sandbox:truncated]", None),
            "never": (PRO, "一直排队 [sandbox:timeout]", None),
            "broke": (POOR, "没余额的渠道", None),
        }
        numbers = user.submit_all(cases)
        wide = ok(
            user.client.post(
                "/user/ai/tasks/submit",
                json={"modelName": PRO, "prompt": "宽幅", "parameters": {"aspectRatio": "16:9"}},
            )
        )["taskNo"]
        three = ok(
            user.client.post(
                "/user/ai/tasks/submit", json={"modelName": PRO, "prompt": "三张", "n": 3}
            )
        )["taskNo"]
        numbers.update(wide=wide, three=three)

        done = {case: user.wait(n, timeout=40) for case, n in numbers.items()}
        for case in ("plain", "edit", "throttled", "wide", "three"):
            task = done[case]
            assert task["status"] == "completed", (case, task)
        # flux-pro-1.1 is sized in pixels: the ratio chosen reached it as width × height.
        assert picture_size(done["wide"]["resultUrl"]) == drawn(1344, 768)
        assert picture_size(done["plain"]["resultUrl"]) == drawn(1024, 1024)
        assert picture_size(done["edit"]["resultUrl"]) == drawn(1024, 1024)
        # One picture a request: a task of three gets one, and two are refunded.
        assert (done["three"]["delivered"], done["three"]["pointsRefunded"]) == (1, 80)

        def failed(case: str, words: str) -> None:
            task = done[case]
            assert task["status"] == "failed" and words in task["errorMessage"], (case, task)

        failed("content", "内容审核未通过:上游判定生成的图片含敏感内容")
        failed("request", "内容审核未通过:上游判定请求")
        failed("down", "上游服务错误(HTTP 500)")
        failed("lost", "无法确认上游是否已接受任务")
        failed("unknown", "上游返回未知状态")
        failed("badimage", "不是有效图片")
        failed("private", "结果地址不安全")
        failed("poll429", "上游限流(HTTP 429)")
        failed("garbage", "上游返回了无法解析的内容")
        failed("slowpoll", "上游接口超时")
        failed("expired", "HTTP 404")
        failed("html", "不是有效图片")
        failed("truncated", "不是有效图片")
        failed("never", "任务超时")
        failed("broke", "没有可用的上游渠道")
        for case in done.keys() - {"content", "request"}:
            assert not (done[case].get("errorMessage") or "").startswith("内容审核"), case

        stats = httpx.get(sandbox + "/stats").json()
        assert stats["references"]["加上雪"] == [len(upload["url"])]  # sent as a URL
        accepted = stats["accepted"]
        prompts = {case: prompt for case, (_, prompt, _) in cases.items()}
        prompts.update(wide="宽幅", three="三张")
        for case in prompts.keys() - {"down", "broke"}:
            assert accepted[prompts[case]] == 1, (case, accepted)
        assert prompts["down"] not in accepted and prompts["broke"] not in accepted

        channels = {c["name"]: c for c in ok(admin.get("/admin/channels"))}
        wrong_key = channels["BFL-坏密钥"]["keys"][0]
        assert wrong_key["enabled"] is False and "鉴权失败" in wrong_key["disabledReason"]
        poor_key = channels["BFL-没余额"]["keys"][0]
        assert poor_key["enabled"] is False and "上游账户余额不足" in poor_key["disabledReason"]
        assert channels["BFL"]["keys"][0]["enabled"] is True
        assert channels["BFL"]["uncertainCount"] == 1
        # The first of them failed over: refused by the wrong key, then the poor one.
        outcomes = {
            tuple(t["outcome"] for t in ok(admin.get(f"/admin/tasks/{n}/attempts")))
            for case, n in numbers.items()
            if case in ("plain", "edit", "wide", "three")
        }
        assert ("key_rejected", "key_rejected", "accepted") in outcomes or (
            "key_rejected",
            "accepted",
        ) in outcomes, outcomes
        # Charged: the 5 completed (40 each; the task of three kept one picture's).
        assert user.balance() == 2000 - 40 * 5
        text = "".join(p.log_text() for p in platform.processes)
        for key in (good, poor, "bfl_wrong"):
            assert key not in text
        platform.audit()


def test_a_bfl_key_holds_24_active_tasks_by_default(
    own_platform: Callable[..., Platform],
) -> None:
    """BFL answers 429 beyond 24 active tasks a key. A channel at its default keyInflight
    never sends a 25th (the rest wait their turn); one without a cap is refused and tries
    again. Every task completes either way."""
    with own_platform(
        SHENGTU_MAX_INFLIGHT_TASKS="100",
        SHENGTU_TASK_DEADLINE="60",
        SHENGTU_SUBMIT_ATTEMPTS="20",
    ) as platform:
        admin = platform.admin_client
        capped_key, free_key = "bfl_" + secrets.token_hex(8), "bfl_" + secrets.token_hex(8)
        # Jobs that take 3 s: 28 submitted at once are all running when the 25th arrives.
        env = {**platform.env, "SHENGTU_SANDBOX_LATENCY": "3"}
        sandbox, _ = platform.sandbox_upstream(f"{capped_key},{free_key}", env=env)
        for name in ("flux-capped", "flux-free"):
            platform.add_model(name, task_type="text_to_image", cost=1, upstream_model=name)
        common = {"settle": False, "protocol": "bfl", "baseUrl": sandbox + "/bfl", "keyRps": 200}
        capped = platform.add_channel(
            **common,
            name="BFL-默认",
            addKeys=[capped_key],
            models=[{"modelName": "flux-capped", "upstreamModel": "flux-pro-1.1"}],
        )
        free = platform.add_channel(
            **common,
            name="BFL-不限",
            addKeys=[free_key],
            keyInflight=0,
            models=[{"modelName": "flux-free", "upstreamModel": "flux-pro-1.1"}],
        )
        assert (capped["keyInflight"], free["keyInflight"]) == (24, 0)
        time.sleep(1.2)

        user = platform.new_user(points=100)

        def submit(name: str, i: int) -> str:
            answer = user.client.post(
                "/user/ai/tasks/submit", json={"modelName": name, "prompt": f"{name}-{i}"}
            )
            return str(ok(answer)["taskNo"])

        # All at once: on a busy machine, 28 submits one after another can outlast the first
        # jobs, and then no 25th is ever active beside 24 others.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            numbers = {
                name: list(pool.map(lambda i, name=name: submit(name, i), range(28)))
                for name in ("flux-capped", "flux-free")
            }
        for name, tasks in numbers.items():
            for task_no in tasks:
                assert user.wait(task_no, timeout=90)["status"] == "completed", name

        def throttled(name: str) -> int:
            return sum(
                t["httpStatus"] == 429
                for task_no in numbers[name]
                for t in ok(admin.get(f"/admin/tasks/{task_no}/attempts"))
            )

        assert throttled("flux-capped") == 0
        assert throttled("flux-free") >= 4
        accepted = httpx.get(sandbox + "/stats").json()["accepted"]
        assert all(accepted[f"{name}-{i}"] == 1 for name in numbers for i in range(28))
        assert user.balance() == 100 - 56
        platform.audit()


def test_make_runs_demo_serves_flux_pro_and_kontext_through_the_bfl_double(
    tmp_path: Path,
) -> None:
    """`make run` (`shengtu demo`, no upstream key): flux-pro and flux-kontext are served by
    the built-in sandbox's BFL double, a ratio as the model takes it, a reference as a URL."""
    platform = Platform(tmp_path).start()
    try:
        cli(platform.env, "demo")
        user = platform.new_user(points=200)
        cards = {m["modelName"]: m for m in ok(user.client.get("/user/ai/models"))}
        assert cards["flux-pro"]["pointsCost"] == cards["flux-kontext"]["pointsCost"] == 40
        assert "maxN" not in cards["flux-pro"]["parameters"]  # one picture a request
        upload = ok(
            user.client.post("/user/files/upload", files={"file": ("ref.png", png(), "image/png")})
        )
        wide = ok(
            user.client.post(
                "/user/ai/tasks/submit",
                json={
                    "modelName": "flux-pro",
                    "prompt": "演示",
                    "parameters": {"aspectRatio": "16:9"},
                },
            )
        )["taskNo"]
        edit = ok(
            user.client.post(
                "/user/ai/tasks/submit",
                json={
                    "modelName": "flux-kontext",
                    "prompt": "演示改图",
                    "imageUrl": upload["url"],
                    "parameters": {"aspectRatio": "3:4"},
                },
            )
        )["taskNo"]
        for task_no, size in ((wide, drawn(1344, 768)), (edit, drawn(896, 1152))):
            task = user.wait(task_no)
            assert task["status"] == "completed", task
            assert picture_size(task["resultUrl"]) == size
        assert user.balance() == 200 - 40 * 2
    finally:
        platform.stop()
