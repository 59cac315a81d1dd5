"""A task of several pictures through the native route and the worker: n=4, the upstream
makes 3 (``[sandbox:fewer]``), one picture's points come back; every delivered picture is
served under its own URL, and the retention sweep deletes every one of them."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import httpx

from tests.openai_compat.test_openai_model_parameters import add_demo_catalog
from tests.support import Platform, cli


def test_a_task_of_four_that_gets_three_serves_three_and_sweeps_three(
    own_platform: Callable[..., Platform],
) -> None:
    platform = own_platform(SHENGTU_RESULT_RETENTION_DAYS="0.00003")  # ~2.6 s
    add_demo_catalog(platform)
    with platform:
        sandbox, key = platform.sandbox_upstream("sk-" + secrets.token_hex(12))
        platform.add_channel(
            protocol="openai_images",
            name="OpenAI",
            baseUrl=sandbox,
            addKeys=[key],
            models=[{"modelName": "gpt-image-1", "upstreamModel": "gpt-image-1"}],
        )
        user = platform.new_user(points=1000)
        body = {
            "modelName": "gpt-image-1",
            "prompt": "[sandbox:fewer] 四只柴犬",
            "parameters": {"quality": "low"},
            "n": 4,
        }
        quoted = user.client.post("/user/ai/quote", json=body).json()["data"]
        assert (quoted["each"], quoted["total"]) == (10, 40)
        submitted = user.submit(**body)
        assert submitted["code"] == 200, submitted
        done = user.wait(submitted["data"]["taskNo"])
        assert done["status"] == "completed", done
        assert (done["pictures"], done["delivered"], done["pointsRefunded"]) == (4, 3, 10)
        assert done["pointsCost"] == 40 and user.balance() == 1000 - 30
        urls = done["resultUrls"]
        assert len(urls) == 3 and len(set(urls)) == 3 and urls[0] == done["resultUrl"]
        bodies = [httpx.get(u) for u in urls]
        assert [b.status_code for b in bodies] == [200, 200, 200]
        assert len({b.content for b in bodies}) == 3
        # Another task's number with a real picture's random part is no picture at all.
        forged = urls[1].replace(done["taskNo"], "TASK-20000101000000000-0001")
        assert httpx.get(forged).status_code == 404
        records = user.client.get("/user/points/consumption/records").json()["data"]["records"]
        kinds = {r["kind"]: r["delta"] for r in records if r.get("kind")}
        assert kinds.get("undelivered") == 10, records
        platform.audit()

        time.sleep(3)
        assert "过期结果图片 1 个" in cli(platform.env, "sweep").stdout
        assert [httpx.get(u).status_code for u in urls] == [410, 410, 410]
        assert not list((platform.data_dir / "files" / "results").rglob("*.png"))
