"""The operator's API (issue 13): users, groups, codes, key controls, tasks, audit log.

Each test runs on SQLite, MariaDB and PostgreSQL (the shared ``audited`` platform), and
the ledger audit passes after it."""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from tests.databases import ScratchDatabase
from tests.support import Platform, User

MODEL = "sc_soraimg_text_1x1"  # 30 points
I2I = "sc_soraimg_img2img_1x1"


def _admin(platform: Platform) -> httpx.Client:
    assert platform.admin is not None
    return platform.admin.client


def _ok(answer: httpx.Response) -> Any:
    body = answer.json()
    assert body["code"] == 200, body
    return body["data"]


def _user_id(user: User) -> int:
    return int(_ok(user.client.get("/user/auth/me"))["userId"])


def _audit_entries(platform: Platform, target: str) -> list[dict[str, Any]]:
    return _ok(_admin(platform).get("/admin/audit", params={"target": target, "size": 100}))[
        "records"
    ]


def test_an_admin_finds_inspects_disables_resets_and_deletes_users(audited: Platform) -> None:
    admin = _admin(audited)
    user = audited.new_user(points=100)
    uid = _user_id(user)
    key = _ok(user.client.post("/user/api-keys", json={"name": "脚本"}))["key"]
    by_key = audited.client(key)

    found = _ok(admin.get("/admin/users", params={"q": user.name[2:], "active": True}))
    assert [u["userId"] for u in found["records"]] == [uid]
    assert found["records"][0]["balance"] == 100 and found["records"][0]["group"] == "default"
    assert _ok(admin.get("/admin/users", params={"q": str(uid)}))["records"][0]["userId"] == uid

    detail = _ok(admin.get(f"/admin/users/{uid}"))
    assert detail["balance"] == 100 and [k["name"] for k in detail["apiKeys"]] == ["脚本"]
    assert detail["recentLedger"][0]["kind"] == "grant"

    # Disabled: the token and the key are refused on their very next request.
    assert _ok(admin.put(f"/admin/users/{uid}", json={"active": False}))["active"] is False
    assert user.client.get("/user/points/consumption/balance").status_code == 401
    assert by_key.get("/user/points/consumption/balance").status_code == 401
    assert _ok(admin.put(f"/admin/users/{uid}", json={"active": True}))["active"] is True
    assert by_key.get("/user/points/consumption/balance").json()["code"] == 200

    # Points with a note, both ways; never below zero.
    assert (
        _ok(admin.post(f"/admin/users/{uid}/points", json={"amount": 50, "note": "补偿"}))[
            "balance"
        ]
        == 150
    )
    assert _ok(admin.post(f"/admin/users/{uid}/points", json={"amount": -20}))["balance"] == 130
    too_much = admin.post(f"/admin/users/{uid}/points", json={"amount": -1000}).json()
    assert too_much["code"] == 402 and user.balance() == 130
    notes = [r["note"] for r in _ok(admin.get(f"/admin/users/{uid}"))["recentLedger"]]
    assert notes[:2] == ["管理员调整", "补偿"]

    # A password reset ends the user's tokens; the new password logs in.
    assert (
        admin.post(f"/admin/users/{uid}/password", json={"password": "short"}).json()["code"] == 400
    )
    _ok(admin.post(f"/admin/users/{uid}/password", json={"password": "a-new-password-1"}))
    assert user.client.get("/user/auth/me").status_code == 401
    again = audited.login(user.name, "a-new-password-1")

    # Made admin, the user reaches /admin; made user again, no longer.
    assert again.client.get("/admin/users").status_code == 403
    _ok(admin.put(f"/admin/users/{uid}", json={"role": "admin"}))
    assert again.client.get("/admin/users").json()["code"] == 200
    _ok(admin.put(f"/admin/users/{uid}", json={"role": "user"}))
    assert again.client.get("/admin/users").status_code == 403

    # An admin cannot lock themselves out.
    me = _user_id(audited.admin)  # type: ignore[arg-type]
    for change in ({"active": False}, {"role": "user"}):
        refused = admin.put(f"/admin/users/{me}", json=change).json()
        assert refused["code"] == 400 and "自己" in refused["message"], refused
    assert admin.delete(f"/admin/users/{me}").json()["code"] == 400

    entries = _audit_entries(audited, f"user:{uid}")
    actions = [e["action"] for e in entries]
    assert actions.count("user.change") == 4 and "user.password_reset" in actions
    assert actions.count("points.grant") >= 2 and "points.take" in actions
    disable = next(e for e in reversed(entries) if e["action"] == "user.change")
    assert disable["before"]["active"] is True and disable["after"]["active"] is False
    assert disable["actor"] == "admin"
    assert "a-new-password-1" not in admin.get("/admin/audit", params={"size": 100}).text

    # Deleted: the token and key open nothing, and the id is gone.
    _ok(admin.delete(f"/admin/users/{uid}"))
    assert again.client.get("/user/auth/me").status_code == 401
    assert by_key.get("/user/auth/me").status_code == 401
    assert admin.get(f"/admin/users/{uid}").json()["code"] == 404
    assert _audit_entries(audited, f"user:{uid}")[0]["action"] == "user.delete"


def test_a_group_multiplier_sets_the_charge_and_the_refund_returns_it(audited: Platform) -> None:
    admin = _admin(audited)
    name = "vip-" + secrets.token_hex(3)
    made = _ok(admin.post("/admin/groups", json={"name": name, "multiplier": "1.5"}))
    assert made["users"] == 0
    duplicate = admin.post("/admin/groups", json={"name": name}).json()
    assert duplicate["code"] == 409
    user = audited.new_user(points=200)
    uid = _user_id(user)
    assert admin.put(f"/admin/users/{uid}", json={"group": "nope"}).json()["code"] == 404
    _ok(admin.put(f"/admin/users/{uid}", json={"group": name}))

    # 30 points × 1.5 = 45, recorded on the task, refunded whole.
    task = user.submit(modelName=MODEL, prompt="倍率")
    assert task["code"] == 200, task
    assert task["data"]["pointsCost"] == 45 and user.balance() == 155
    # 30 × 0.3333 = 9.999 → rounded up to 10.
    _ok(admin.put(f"/admin/groups/{name}", json={"multiplier": "0.3333"}))
    cheap = user.submit(modelName=MODEL, prompt="便宜")["data"]
    assert cheap["pointsCost"] == 10 and user.balance() == 145
    # ×0: free, and still recorded.
    _ok(admin.put(f"/admin/groups/{name}", json={"multiplier": "0"}))
    free = user.submit(modelName=MODEL, prompt="免费")["data"]
    assert free["pointsCost"] == 0 and user.balance() == 145
    for t in (task["data"], cheap, free):
        done = user.wait(t["taskNo"], timeout=60)
        assert done["pointsCost"] == t["pointsCost"]

    groups = {g["name"]: g for g in _ok(admin.get("/admin/groups"))}
    assert groups[name]["users"] == 1 and groups["default"]["multiplier"] == "1"
    assert admin.delete(f"/admin/groups/{name}").json()["code"] == 409
    assert admin.delete("/admin/groups/default").json()["code"] == 400
    assert admin.post("/admin/groups", json={"name": "含空格 x"}).json()["code"] == 400
    _ok(admin.put(f"/admin/users/{uid}", json={"group": "default"}))
    _ok(admin.delete(f"/admin/groups/{name}"))
    actions = [e["action"] for e in _audit_entries(audited, f"group:{name}")]
    assert actions == ["group.delete", "group.change", "group.change", "group.create"]


def test_code_batches_are_listed_filtered_disabled_and_exported(audited: Platform) -> None:
    admin = _admin(audited)
    note = "<img src=x onerror=alert(1)> 双十一"
    batch = _ok(admin.post("/admin/codes", json={"count": 5, "points": 25, "note": note}))
    assert batch["count"] == 5 and len(set(batch["codes"])) == 5
    # 160 random bits, base32: 32 characters after the prefix.
    assert all(len(c) == 2 + 32 for c in batch["codes"])
    name = batch["batch"]
    listed = _ok(admin.get("/admin/codes", params={"batch": name, "state": "unused"}))
    assert listed["total"] == 5 and listed["records"][0]["note"] == note

    user = audited.new_user()
    got = _ok(user.client.post("/user/points/redeem", json={"code": batch["codes"][0]}))
    assert got == {"points": 25, "balance": 25}
    used = _ok(admin.get("/admin/codes", params={"batch": name, "state": "used"}))
    assert [c["usedBy"] for c in used["records"]] == [_user_id(user)]

    assert _ok(admin.post("/admin/codes/disable", json={"batch": name}))["disabled"] == 4
    refused = user.client.post("/user/points/redeem", json={"code": batch["codes"][1]}).json()
    assert refused["code"] == 400 and "停用" in refused["message"]
    assert _ok(admin.get("/admin/codes", params={"batch": name, "state": "disabled"}))["total"] == 4
    assert admin.post("/admin/codes/disable", json={}).json()["code"] == 400

    past = _ok(
        admin.post(
            "/admin/codes", json={"count": 2, "points": 5, "expireTime": "2020-01-01T00:00:00"}
        )
    )
    expired = _ok(admin.get("/admin/codes", params={"batch": past["batch"], "state": "expired"}))
    assert expired["total"] == 2

    exported = admin.get("/admin/codes/export", params={"batch": name})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert sorted(r["code"] for r in rows) == sorted(batch["codes"])
    assert sorted(r["state"] for r in rows) == ["disabled"] * 4 + ["used"]
    assert rows[0]["note"] == note
    formula = _ok(admin.post("/admin/codes", json={"count": 1, "points": 1, "note": "=1+1"}))
    cell = admin.get("/admin/codes/export", params={"batch": formula["batch"]}).text
    assert "'=1+1" in cell
    actions = [e["action"] for e in _audit_entries(audited, f"batch:{name}")]
    assert actions == ["codes.disable", "codes.create"]


def test_fifty_racing_redemptions_of_one_code_credit_it_once(audited: Platform) -> None:
    code = _ok(_admin(audited).post("/admin/codes", json={"count": 1, "points": 70}))["codes"][0]
    users = [audited.new_user() for _ in range(5)]
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(
            pool.map(
                lambda i: (
                    users[i % 5].client.post("/user/points/redeem", json={"code": code}).json()
                ),
                range(50),
            )
        )
    assert sum(a["code"] == 200 for a in answers) == 1, answers
    assert sum(u.balance() for u in users) == 70


def test_failed_redemptions_are_throttled_per_user_and_per_address(tmp_path: Path) -> None:
    platform = Platform(
        tmp_path,
        worker=False,
        SHENGTU_REDEEM_FAILURES_PER_WINDOW="3",
        SHENGTU_REDEEM_IP_FAILURES_PER_WINDOW="5",
    ).start()
    try:
        code = _ok(_admin(platform).post("/admin/codes", json={"count": 2, "points": 9}))
        first, second = platform.new_user(), platform.new_user()

        def guess(user: User, text: str) -> dict[str, Any]:
            return user.client.post("/user/points/redeem", json={"code": text}).json()  # type: ignore[no-any-return]

        assert [guess(first, f"ST-WRONG-{i}")["code"] for i in range(4)] == [400, 400, 400, 429]
        # Past its failures the user's right code is still checked (a late check), and
        # credited: a good code is no guess (tests/test_redeem_throttle.py).
        assert guess(first, code["codes"][0])["code"] == 200
        # Another account from the same address: the address has 2 failures left.
        assert [guess(second, f"ST-BAD-{i}")["code"] for i in range(3)] == [400, 400, 429]
        third = platform.new_user()
        assert guess(third, "ST-BAD-3")["code"] == 429
        assert guess(third, code["codes"][1])["code"] == 200
        unused = _ok(_admin(platform).get("/admin/codes", params={"state": "unused"}))
        assert unused["total"] == 0
    finally:
        platform.stop()


def test_a_key_quota_holds_under_racing_submits_and_refunds_restore_it(
    tmp_path: Path, fresh_database: ScratchDatabase
) -> None:
    # No in-flight caps and no worker: only the quota stands between the key and spending.
    platform = Platform(
        tmp_path,
        worker=False,
        database_url=fresh_database.url,
        SHENGTU_MAX_INFLIGHT_TASKS="0",
        SHENGTU_MAX_INFLIGHT_PER_API_KEY="0",
    ).start()
    try:
        user = platform.new_user(points=1000)
        made = _ok(user.client.post("/user/api-keys", json={"name": "限额", "quotaPoints": 100}))
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
        assert _ok(user.client.get("/user/api-keys"))[0]["spentPoints"] == 90

        # A refund gives the key its quota back.
        _ok(user.client.post(f"/user/ai/tasks/{accepted[0]['taskNo']}/cancel"))
        assert _ok(user.client.get("/user/api-keys"))[0]["spentPoints"] == 60
        submit = {"modelName": MODEL, "prompt": "再来"}
        assert by_key.post("/user/ai/tasks/submit", json=submit).json()["code"] == 200
        assert by_key.post("/user/ai/tasks/submit", json=submit).status_code == 403
        # Null removes the quota.
        _ok(user.client.put(f"/user/api-keys/{made['id']}", json={"quotaPoints": None}))
        assert by_key.post("/user/ai/tasks/submit", json=submit).json()["code"] == 200
        assert user.balance() == 1000 - 120
        platform.audit()
    finally:
        platform.stop()


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
    expiring = _ok(keys.post("/user/api-keys", json={"expireTime": soon}))
    client = audited.client(expiring["key"])
    assert client.get("/user/auth/me").json()["code"] == 200
    time.sleep(2.5)
    expired = client.get("/user/auth/me")
    assert expired.status_code == 403 and "已过期" in expired.json()["message"]

    narrow = _ok(keys.post("/user/api-keys", json={"allowedModels": [I2I]}))
    refused = audited.client(narrow["key"]).post(
        "/user/ai/tasks/submit", json={"modelName": MODEL, "prompt": "不许"}
    )
    assert refused.status_code == 403 and MODEL in refused.json()["message"]

    elsewhere = _ok(keys.post("/user/api-keys", json={"allowedCidrs": ["10.0.0.0/8"]}))
    far = audited.client(elsewhere["key"]).get("/user/points/consumption/balance")
    assert far.status_code == 403 and "127.0.0.1" in far.json()["message"]
    # The hot reads check it too.
    assert audited.client(elsewhere["key"]).get("/user/ai/tasks/TASK-1").status_code == 403
    _ok(keys.put(f"/user/api-keys/{elsewhere['id']}", json={"allowedCidrs": ["127.0.0.0/8"]}))
    assert audited.client(elsewhere["key"]).get("/user/auth/me").json()["code"] == 200
    assert user.balance() == 300


def test_admins_find_inspect_and_cancel_any_task(audited: Platform) -> None:
    admin = _admin(audited)
    user = audited.new_user(points=100)
    uid = _user_id(user)
    task = user.submit(modelName=MODEL, prompt="不会完成 [sandbox:timeout]")["data"]

    mine = _ok(admin.get("/admin/tasks", params={"userId": uid}))
    assert [t["taskNo"] for t in mine["records"]] == [task["taskNo"]]
    assert mine["records"][0]["username"] == user.name
    by_name = _ok(admin.get("/admin/tasks", params={"username": user.name, "model": MODEL}))
    assert by_name["total"] == 1
    assert _ok(admin.get("/admin/tasks", params={"taskNo": task["taskNo"]}))["total"] == 1
    assert (
        _ok(admin.get("/admin/tasks", params={"userId": uid, "status": "completed"}))["total"] == 0
    )
    assert admin.get("/admin/tasks", params={"status": "bogus"}).json()["code"] == 400

    deadline = time.monotonic() + 30
    while True:
        detail = _ok(admin.get(f"/admin/tasks/{task['taskNo']}"))
        if detail["task"]["upstreamId"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    upstream = detail["task"]["upstreamId"]
    assert upstream and detail["attempts"] and detail["attempts"][0]["outcome"] == "accepted"
    assert [r["kind"] for r in detail["ledger"]] == ["consume"]
    assert _ok(admin.get("/admin/tasks", params={"upstreamId": upstream}))["total"] == 1

    cancelled = admin.post(f"/admin/tasks/{task['taskNo']}/cancel")
    while cancelled.json()["code"] == 409 and "稍后" in cancelled.json()["message"]:
        time.sleep(0.2)
        cancelled = admin.post(f"/admin/tasks/{task['taskNo']}/cancel")
    data = _ok(cancelled)
    assert data["status"] == "failed" and data["errorMessage"] == "管理员已取消任务"
    assert user.balance() == 100
    again = admin.post(f"/admin/tasks/{task['taskNo']}/cancel").json()
    assert again["code"] == 409
    kinds = [r["kind"] for r in _ok(admin.get(f"/admin/tasks/{task['taskNo']}"))["ledger"]]
    assert kinds == ["consume", "refund"]
    assert _audit_entries(audited, f"task:{task['taskNo']}")[0]["after"] == {"status": "failed"}
    assert admin.get("/admin/tasks/TASK-nope").json()["code"] == 404


def test_usage_per_day_and_the_ledger_audit_answer(audited: Platform) -> None:
    user = audited.new_user(points=100)
    done = user.submit(modelName=MODEL, prompt="用量")["data"]
    failed = user.submit(modelName=MODEL, prompt="用量 [sandbox:fail]")["data"]
    for task in (done, failed):
        user.wait(task["taskNo"], timeout=30)
    days = _ok(user.client.get("/user/usage", params={"days": 7}))
    assert len(days) == 7 and days[-1]["date"] == max(d["date"] for d in days)
    today = days[-1]
    assert (today["tasks"], today["completed"], today["failed"], today["points"]) == (2, 1, 1, 30)
    assert user.client.get("/user/usage", params={"days": 91}).json()["code"] == 400
    checks = _ok(_admin(audited).get("/admin/ledger/audit"))
    assert len(checks) == 6 and all(c["ok"] for c in checks), checks
    assert user.client.get("/admin/ledger/audit").status_code == 403


def test_a_disabled_users_open_websocket_closes_at_once(audited: Platform) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    user = audited.new_user()
    url = audited.url.replace("http://", "ws://") + f"/ws/tasks?token={user.token}"
    with connect(url) as ws:
        assert json.loads(ws.recv(timeout=5))["event"] == "connected"
        started = time.monotonic()
        _ok(_admin(audited).put(f"/admin/users/{_user_id(user)}", json={"active": False}))
        try:
            ws.recv(timeout=5)  # the periodic re-check is 30 s away: only the push is this quick
            raise AssertionError("the WebSocket stayed open")
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4401
        assert time.monotonic() - started < 5
