"""A task an upstream refused for its content ends with the metrics' outcome "moderated",
apart from the failures of an outage."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from tests.edge.test_metrics import samples, value
from tests.support import Platform


def test_a_moderated_task_is_its_own_outcome(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    platform = Platform(tmp_path, SHENGTU_METRICS_TOKEN=token, SHENGTU_TASK_DEADLINE="20")
    with platform:
        sandbox, key = platform.sandbox_upstream("sk-" + secrets.token_hex(16))
        platform.add_model("wanx-mod", task_type="text_to_image", cost=20, upstream_model="x")
        platform.add_channel(
            protocol="dashscope",
            name="百炼",
            baseUrl=sandbox,
            addKeys=[key],
            models=[{"modelName": "wanx-mod", "upstreamModel": "wanx2.1-t2i-turbo"}],
        )
        user = platform.new_user(points=100)
        refused = user.submit(modelName="wanx-mod", prompt="[sandbox:fail] 审核")["data"]
        down = user.submit(modelName="wanx-mod", prompt="[sandbox:error500] 故障")["data"]
        done = user.submit(modelName="wanx-mod", prompt="正常")["data"]
        ended = {
            n: user.wait(t["taskNo"], timeout=30)
            for n, t in (("refused", refused), ("down", down), ("done", done))
        }
        assert "内容审核未通过" in ended["refused"]["errorMessage"], ended["refused"]
        assert ended["down"]["status"] == "failed" and ended["done"]["status"] == "completed"
        found = samples(
            httpx.get(platform.url + "/metrics", headers={"Authorization": f"Bearer {token}"}).text
        )
        ended_total = "shengtu_tasks_ended_total"
        assert value(found, ended_total, model="wanx-mod", outcome="moderated") == 1
        assert value(found, ended_total, model="wanx-mod", outcome="failed") == 1
        assert value(found, ended_total, model="wanx-mod", outcome="completed") == 1
        assert user.balance() == 100 - 20
        platform.audit()
