"""The operator's users (issue 13): found, inspected, disabled, given points, reset, made
admin and deleted, each in the audit log. On SQLite, MariaDB and PostgreSQL (the shared
``audited`` platform); the ledger audit passes after it."""

from __future__ import annotations

from tests.support import Platform, ok


def test_an_admin_finds_inspects_disables_resets_and_deletes_users(audited: Platform) -> None:
    admin = audited.admin_client
    user = audited.new_user(points=100)
    uid = user.user_id()
    key = ok(user.client.post("/user/api-keys", json={"name": "脚本"}))["key"]
    by_key = audited.client(key)

    found = ok(admin.get("/admin/users", params={"q": user.name[2:], "active": True}))
    assert [u["userId"] for u in found["records"]] == [uid]
    assert found["records"][0]["balance"] == 100 and found["records"][0]["group"] == "default"
    assert ok(admin.get("/admin/users", params={"q": str(uid)}))["records"][0]["userId"] == uid

    detail = ok(admin.get(f"/admin/users/{uid}"))
    assert detail["balance"] == 100 and [k["name"] for k in detail["apiKeys"]] == ["脚本"]
    assert detail["recentLedger"][0]["kind"] == "grant"

    # Disabled: the token and the key are refused on their very next request.
    assert ok(admin.put(f"/admin/users/{uid}", json={"active": False}))["active"] is False
    assert user.client.get("/user/points/consumption/balance").status_code == 401
    assert by_key.get("/user/points/consumption/balance").status_code == 401
    assert ok(admin.put(f"/admin/users/{uid}", json={"active": True}))["active"] is True
    assert by_key.get("/user/points/consumption/balance").json()["code"] == 200

    # Points with a note, both ways; never below zero.
    assert (
        ok(admin.post(f"/admin/users/{uid}/points", json={"amount": 50, "note": "补偿"}))["balance"]
        == 150
    )
    assert ok(admin.post(f"/admin/users/{uid}/points", json={"amount": -20}))["balance"] == 130
    too_much = admin.post(f"/admin/users/{uid}/points", json={"amount": -1000}).json()
    assert too_much["code"] == 402 and user.balance() == 130
    notes = [r["note"] for r in ok(admin.get(f"/admin/users/{uid}"))["recentLedger"]]
    assert notes[:2] == ["管理员调整", "补偿"]

    # A password reset ends the user's tokens; the new password logs in.
    assert (
        admin.post(f"/admin/users/{uid}/password", json={"password": "short"}).json()["code"] == 400
    )
    ok(admin.post(f"/admin/users/{uid}/password", json={"password": "a-new-password-1"}))
    assert user.client.get("/user/auth/me").status_code == 401
    again = audited.login(user.name, "a-new-password-1")

    # Made admin, the user reaches /admin; made user again, no longer.
    assert again.client.get("/admin/users").status_code == 403
    ok(admin.put(f"/admin/users/{uid}", json={"role": "admin"}))
    assert again.client.get("/admin/users").json()["code"] == 200
    ok(admin.put(f"/admin/users/{uid}", json={"role": "user"}))
    assert again.client.get("/admin/users").status_code == 403

    # An admin cannot lock themselves out.
    assert audited.admin is not None
    me = audited.admin.user_id()
    for change in ({"active": False}, {"role": "user"}):
        refused = admin.put(f"/admin/users/{me}", json=change).json()
        assert refused["code"] == 400 and "自己" in refused["message"], refused
    assert admin.delete(f"/admin/users/{me}").json()["code"] == 400

    entries = audited.audit_entries(f"user:{uid}")
    actions = [e["action"] for e in entries]
    assert actions.count("user.change") == 4 and "user.password_reset" in actions
    assert actions.count("points.grant") >= 2 and "points.take" in actions
    disable = next(e for e in reversed(entries) if e["action"] == "user.change")
    assert disable["before"]["active"] is True and disable["after"]["active"] is False
    assert disable["actor"] == "admin"
    assert "a-new-password-1" not in admin.get("/admin/audit", params={"size": 100}).text

    # Deleted: the token and key open nothing, and the id is gone.
    ok(admin.delete(f"/admin/users/{uid}"))
    assert again.client.get("/user/auth/me").status_code == 401
    assert by_key.get("/user/auth/me").status_code == 401
    assert admin.get(f"/admin/users/{uid}").json()["code"] == 404
    assert audited.audit_entries(f"user:{uid}")[0]["action"] == "user.delete"
