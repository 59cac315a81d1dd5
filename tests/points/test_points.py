"""The balance, the ledger, 402, and the charge under a race."""

from __future__ import annotations

import asyncio

import httpx

from tests.support import Platform


def test_balance_has_the_spec_shape(platform: Platform) -> None:
    user = platform.new_user(points=850)
    body = user.client.get("/user/points/consumption/balance").json()
    assert body["code"] == 200 and body["message"] == "success"
    assert set(body["data"]) == {"userId", "balance", "expireTime"}
    assert isinstance(body["data"]["userId"], int)
    assert body["data"]["balance"] == 850 and body["data"]["expireTime"] is None


def test_402_leaves_the_balance_and_the_tasks_unchanged(audited: Platform) -> None:
    user = audited.new_user(points=29)
    r = user.client.post(
        "/user/ai/tasks/submit", json={"modelName": "sc_soraimg_text_1x1", "prompt": "一只猫"}
    )
    assert r.status_code == 402
    assert r.json() == {
        "code": 402,
        "message": "积分不足:需要 30 积分,当前余额 29 积分",
        "data": None,
    }
    assert user.balance() == 29
    assert user.client.get("/user/ai/tasks/list").json()["data"]["total"] == 0
    records = user.client.get("/user/points/consumption/records").json()["data"]
    assert [r["kind"] for r in records["records"]] == ["grant"]


def test_records_are_paged_newest_first(audited: Platform) -> None:
    user = audited.new_user(points=100)
    audited.grant(user.name, 5)
    audited.grant(user.name, 7)
    page = user.client.get("/user/points/consumption/records?page=1&size=2").json()["data"]
    assert (page["total"], page["pages"], page["current"]) == (3, 2, 1)
    assert [(r["delta"], r["balanceAfter"]) for r in page["records"]] == [(7, 112), (5, 105)]
    second = user.client.get("/user/points/consumption/records?page=2&size=2").json()["data"]
    assert [(r["kind"], r["delta"], r["balanceAfter"]) for r in second["records"]] == [
        ("grant", 100, 100)
    ]


def test_50_concurrent_submits_against_a_balance_for_7_accept_exactly_7(audited: Platform) -> None:
    user = audited.new_user(points=7 * 30)

    async def race() -> list[int]:
        async with httpx.AsyncClient(
            base_url=audited.url,
            headers={"Authorization": f"Bearer {user.token}"},
            limits=httpx.Limits(max_connections=50),
            timeout=60,
        ) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/user/ai/tasks/submit",
                        json={"modelName": "sc_soraimg_text_1x1", "prompt": f"竞速 {i}"},
                    )
                    for i in range(50)
                )
            )
        return [r.json()["code"] for r in responses]

    codes = asyncio.run(race())
    assert codes.count(200) == 7, codes
    assert codes.count(402) == 43, codes
    assert user.balance() == 0
    listed = user.client.get("/user/ai/tasks/list?size=100").json()["data"]
    assert listed["total"] == 7
    for record in listed["records"]:
        user.wait(record["taskNo"])


def test_admin_grant_needs_an_admin_and_never_goes_below_zero(audited: Platform) -> None:
    user = audited.new_user(points=10)
    r = user.client.post("/admin/points/grant", json={"username": user.name, "amount": 1000})
    assert r.status_code == 403 and r.json()["message"] == "需要管理员权限"
    assert audited.admin is not None
    r = audited.admin.client.post(
        "/admin/points/grant", json={"username": user.name, "amount": -11}
    )
    assert r.status_code == 402 and "积分不足" in r.json()["message"]
    r = audited.admin.client.post(
        "/admin/points/grant", json={"username": user.name, "amount": -10}
    )
    assert r.json()["data"]["balance"] == 0
    assert user.balance() == 0
