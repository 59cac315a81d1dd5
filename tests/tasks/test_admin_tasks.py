"""The operator's tasks (issue 13): any user's found, inspected with its attempts and
ledger, and cancelled with a refund. On SQLite, MariaDB and PostgreSQL (the shared
``audited`` platform); the ledger audit passes after it."""

from __future__ import annotations

import time

from tests.support import Platform, ok

MODEL = "sc_soraimg_text_1x1"  # 30 points


def test_admins_find_inspect_and_cancel_any_task(audited: Platform) -> None:
    admin = audited.admin_client
    user = audited.new_user(points=100)
    uid = user.user_id()
    task = user.submit(modelName=MODEL, prompt="不会完成 [sandbox:timeout]")["data"]

    mine = ok(admin.get("/admin/tasks", params={"userId": uid}))
    assert [t["taskNo"] for t in mine["records"]] == [task["taskNo"]]
    assert mine["records"][0]["username"] == user.name
    by_name = ok(admin.get("/admin/tasks", params={"username": user.name, "model": MODEL}))
    assert by_name["total"] == 1
    assert ok(admin.get("/admin/tasks", params={"taskNo": task["taskNo"]}))["total"] == 1
    assert (
        ok(admin.get("/admin/tasks", params={"userId": uid, "status": "completed"}))["total"] == 0
    )
    assert admin.get("/admin/tasks", params={"status": "bogus"}).json()["code"] == 400

    deadline = time.monotonic() + 30
    while True:
        detail = ok(admin.get(f"/admin/tasks/{task['taskNo']}"))
        if detail["task"]["upstreamId"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    upstream = detail["task"]["upstreamId"]
    assert upstream and detail["attempts"] and detail["attempts"][0]["outcome"] == "accepted"
    assert [r["kind"] for r in detail["ledger"]] == ["consume"]
    assert ok(admin.get("/admin/tasks", params={"upstreamId": upstream}))["total"] == 1

    cancelled = admin.post(f"/admin/tasks/{task['taskNo']}/cancel")
    while cancelled.json()["code"] == 409 and "稍后" in cancelled.json()["message"]:
        time.sleep(0.2)
        cancelled = admin.post(f"/admin/tasks/{task['taskNo']}/cancel")
    data = ok(cancelled)
    assert data["status"] == "failed" and data["errorMessage"] == "管理员已取消任务"
    assert user.balance() == 100
    again = admin.post(f"/admin/tasks/{task['taskNo']}/cancel").json()
    assert again["code"] == 409
    kinds = [r["kind"] for r in ok(admin.get(f"/admin/tasks/{task['taskNo']}"))["ledger"]]
    assert kinds == ["consume", "refund"]
    assert audited.audit_entries(f"task:{task['taskNo']}")[0]["after"] == {"status": "failed"}
    assert admin.get("/admin/tasks/TASK-nope").json()["code"] == 404
