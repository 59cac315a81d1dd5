"""Price groups (issue 13): a group's multiplier sets the charge, recorded on the task, and
the refund returns it. On SQLite, MariaDB and PostgreSQL (the shared ``audited``
platform); the ledger audit passes after it."""

from __future__ import annotations

import secrets

from tests.support import Platform, ok

MODEL = "sc_soraimg_text_1x1"  # 30 points


def test_a_group_multiplier_sets_the_charge_and_the_refund_returns_it(audited: Platform) -> None:
    admin = audited.admin_client
    name = "vip-" + secrets.token_hex(3)
    made = ok(admin.post("/admin/groups", json={"name": name, "multiplier": "1.5"}))
    assert made["users"] == 0
    duplicate = admin.post("/admin/groups", json={"name": name}).json()
    assert duplicate["code"] == 409
    user = audited.new_user(points=200)
    uid = user.user_id()
    assert admin.put(f"/admin/users/{uid}", json={"group": "nope"}).json()["code"] == 404
    ok(admin.put(f"/admin/users/{uid}", json={"group": name}))

    # 30 points × 1.5 = 45, recorded on the task, refunded whole.
    task = user.submit(modelName=MODEL, prompt="倍率")
    assert task["code"] == 200, task
    assert task["data"]["pointsCost"] == 45 and user.balance() == 155
    # 30 × 0.3333 = 9.999 → rounded up to 10.
    ok(admin.put(f"/admin/groups/{name}", json={"multiplier": "0.3333"}))
    cheap = user.submit(modelName=MODEL, prompt="便宜")["data"]
    assert cheap["pointsCost"] == 10 and user.balance() == 145
    # ×0: free, and still recorded.
    ok(admin.put(f"/admin/groups/{name}", json={"multiplier": "0"}))
    free = user.submit(modelName=MODEL, prompt="免费")["data"]
    assert free["pointsCost"] == 0 and user.balance() == 145
    for t in (task["data"], cheap, free):
        done = user.wait(t["taskNo"], timeout=60)
        assert done["pointsCost"] == t["pointsCost"]

    groups = {g["name"]: g for g in ok(admin.get("/admin/groups"))}
    assert groups[name]["users"] == 1 and groups["default"]["multiplier"] == "1"
    assert admin.delete(f"/admin/groups/{name}").json()["code"] == 409
    assert admin.delete("/admin/groups/default").json()["code"] == 400
    assert admin.post("/admin/groups", json={"name": "含空格 x"}).json()["code"] == 400
    ok(admin.put(f"/admin/users/{uid}", json={"group": "default"}))
    ok(admin.delete(f"/admin/groups/{name}"))
    actions = [e["action"] for e in audited.audit_entries(f"group:{name}")]
    assert actions == ["group.delete", "group.change", "group.change", "group.create"]
