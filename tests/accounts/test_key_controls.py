"""An API key's controls (issue 13): a points quota that holds under racing submits, an
expiry, the models and the networks it may use."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable

from tests.support import Platform, ok

MODEL = "sc_soraimg_text_1x1"  # 30 points
I2I = "sc_soraimg_img2img_1x1"


def test_a_key_quota_holds_under_racing_submits_and_refunds_restore_it(
    own_platform: Callable[..., Platform],
) -> None:
    # No in-flight caps and no worker: only the quota stands between the key and spending.
    with own_platform(
        worker=False, SHENGTU_MAX_INFLIGHT_TASKS="0", SHENGTU_MAX_INFLIGHT_PER_API_KEY="0"
    ) as platform:
        user = platform.new_user(points=1000)
        made = ok(user.client.post("/user/api-keys", json={"name": "限额", "quotaPoints": 100}))
        assert made["quotaPoints"] == 100 and made["spentPoints"] == 0
        by_key = platform.client(made["key"])
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(
                pool.map(
                    lambda i: by_key.post(
                        "/user/ai/tasks/submit", json={"modelName": MODEL, "prompt": f"配额 {i}"}
                    ).json(),
                    range(20),
                )
            )
        accepted = [a["data"] for a in answers if a["code"] == 200]
        refused = [a for a in answers if a["code"] != 200]
        assert len(accepted) == 3 and user.balance() == 1000 - 90
        assert all(a["code"] == 403 and "额度不足" in a["message"] for a in refused), refused
        assert ok(user.client.get("/user/api-keys"))[0]["spentPoints"] == 90

        # A refund gives the key its quota back.
        ok(user.client.post(f"/user/ai/tasks/{accepted[0]['taskNo']}/cancel"))
        assert ok(user.client.get("/user/api-keys"))[0]["spentPoints"] == 60
        submit = {"modelName": MODEL, "prompt": "再来"}
        assert by_key.post("/user/ai/tasks/submit", json=submit).json()["code"] == 200
        assert by_key.post("/user/ai/tasks/submit", json=submit).status_code == 403
        # Null removes the quota.
        ok(user.client.put(f"/user/api-keys/{made['id']}", json={"quotaPoints": None}))
        assert by_key.post("/user/ai/tasks/submit", json=submit).json()["code"] == 200
        assert user.balance() == 1000 - 120
        platform.audit()


def test_key_expiry_models_and_networks_are_enforced(audited: Platform) -> None:
    user = audited.new_user(points=300)
    keys = user.client

    bad = keys.post("/user/api-keys", json={"expireTime": "2020-01-01T00:00:00"}).json()
    assert bad["code"] == 400 and "expireTime" in bad["message"]
    bad = keys.post("/user/api-keys", json={"allowedCidrs": ["10.0.0.300/8"]}).json()
    assert bad["code"] == 400 and "CIDR" in bad["message"]
    bad = keys.post("/user/api-keys", json={"allowedModels": ["没有这个模型"]}).json()
    assert bad["code"] == 400 and "不存在" in bad["message"]

    soon = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() + 2))
    soon = soon[:-2] + ":" + soon[-2:]
    expiring = ok(keys.post("/user/api-keys", json={"expireTime": soon}))
    client = audited.client(expiring["key"])
    assert client.get("/user/auth/me").json()["code"] == 200
    time.sleep(2.5)
    expired = client.get("/user/auth/me")
    assert expired.status_code == 403 and "已过期" in expired.json()["message"]

    narrow = ok(keys.post("/user/api-keys", json={"allowedModels": [I2I]}))
    refused = audited.client(narrow["key"]).post(
        "/user/ai/tasks/submit", json={"modelName": MODEL, "prompt": "不许"}
    )
    assert refused.status_code == 403 and MODEL in refused.json()["message"]

    elsewhere = ok(keys.post("/user/api-keys", json={"allowedCidrs": ["10.0.0.0/8"]}))
    far = audited.client(elsewhere["key"]).get("/user/points/consumption/balance")
    assert far.status_code == 403 and "127.0.0.1" in far.json()["message"]
    # The hot reads check it too.
    assert audited.client(elsewhere["key"]).get("/user/ai/tasks/TASK-1").status_code == 403
    ok(keys.put(f"/user/api-keys/{elsewhere['id']}", json={"allowedCidrs": ["127.0.0.0/8"]}))
    assert audited.client(elsewhere["key"]).get("/user/auth/me").json()["code"] == 200
    assert user.balance() == 300
