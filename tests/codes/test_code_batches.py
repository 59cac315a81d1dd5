"""The operator's code batches (issue 13): listed, filtered, disabled and exported (CSV
that no spreadsheet runs). On SQLite, MariaDB and PostgreSQL (the shared ``audited``
platform); the ledger audit passes after it."""

from __future__ import annotations

import csv
import io

from tests.support import Platform, ok


def test_code_batches_are_listed_filtered_disabled_and_exported(audited: Platform) -> None:
    admin = audited.admin_client
    note = "<img src=x onerror=alert(1)> 双十一"
    batch = ok(admin.post("/admin/codes", json={"count": 5, "points": 25, "note": note}))
    assert batch["count"] == 5 and len(set(batch["codes"])) == 5
    # 160 random bits, base32: 32 characters after the prefix.
    assert all(len(c) == 2 + 32 for c in batch["codes"])
    name = batch["batch"]
    listed = ok(admin.get("/admin/codes", params={"batch": name, "state": "unused"}))
    assert listed["total"] == 5 and listed["records"][0]["note"] == note

    user = audited.new_user()
    got = ok(user.client.post("/user/points/redeem", json={"code": batch["codes"][0]}))
    assert got == {"points": 25, "balance": 25}
    used = ok(admin.get("/admin/codes", params={"batch": name, "state": "used"}))
    assert [c["usedBy"] for c in used["records"]] == [user.user_id()]

    assert ok(admin.post("/admin/codes/disable", json={"batch": name}))["disabled"] == 4
    refused = user.client.post("/user/points/redeem", json={"code": batch["codes"][1]}).json()
    assert refused["code"] == 400 and "停用" in refused["message"]
    assert ok(admin.get("/admin/codes", params={"batch": name, "state": "disabled"}))["total"] == 4
    assert admin.post("/admin/codes/disable", json={}).json()["code"] == 400

    past = ok(
        admin.post(
            "/admin/codes", json={"count": 2, "points": 5, "expireTime": "2020-01-01T00:00:00"}
        )
    )
    expired = ok(admin.get("/admin/codes", params={"batch": past["batch"], "state": "expired"}))
    assert expired["total"] == 2

    exported = admin.get("/admin/codes/export", params={"batch": name})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert sorted(r["code"] for r in rows) == sorted(batch["codes"])
    assert sorted(r["state"] for r in rows) == ["disabled"] * 4 + ["used"]
    assert rows[0]["note"] == note
    formula = ok(admin.post("/admin/codes", json={"count": 1, "points": 1, "note": "=1+1"}))
    cell = admin.get("/admin/codes/export", params={"batch": formula["batch"]}).text
    assert "'=1+1" in cell
    actions = [e["action"] for e in audited.audit_entries(f"batch:{name}")]
    assert actions == ["codes.disable", "codes.create"]
