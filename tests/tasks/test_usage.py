"""A user's usage per day, and the ledger audit's answer to the operator (issue 13). On
SQLite, MariaDB and PostgreSQL (the shared ``audited`` platform); the ledger audit passes
after it."""

from __future__ import annotations

from tests.support import Platform, ok

MODEL = "sc_soraimg_text_1x1"  # 30 points


def test_usage_per_day_and_the_ledger_audit_answer(audited: Platform) -> None:
    user = audited.new_user(points=100)
    done = user.submit(modelName=MODEL, prompt="用量")["data"]
    failed = user.submit(modelName=MODEL, prompt="用量 [sandbox:fail]")["data"]
    for task in (done, failed):
        user.wait(task["taskNo"], timeout=30)
    days = ok(user.client.get("/user/usage", params={"days": 7}))
    assert len(days) == 7 and days[-1]["date"] == max(d["date"] for d in days)
    today = days[-1]
    assert (today["tasks"], today["completed"], today["failed"], today["points"]) == (2, 1, 1, 30)
    assert user.client.get("/user/usage", params={"days": 91}).json()["code"] == 400
    checks = ok(audited.admin_client.get("/admin/ledger/audit"))
    # The six of the tasks, and the two of the top-ups (one topup per paid order, one
    # topup_refund per refunded one).
    assert len(checks) == 8 and all(c["ok"] for c in checks), checks
    assert user.client.get("/admin/ledger/audit").status_code == 403
