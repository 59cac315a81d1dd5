"""Tokens that must not work, a throttled login, and one user walking every route with
another user's ids."""

from __future__ import annotations

import time

import httpx
import jwt

from tests.payments.providers import CASES
from tests.payments.support import rig
from tests.support import Platform, cli


def _me(platform: Platform, token: str) -> int:
    return httpx.get(
        platform.url + "/user/auth/me", headers={"Authorization": f"Bearer {token}"}
    ).status_code


def test_expired_early_and_tampered_tokens_are_401(platform: Platform) -> None:
    user = platform.new_user()
    secret = platform.env["SHENGTU_JWT_SECRET"]
    claims = jwt.decode(user.token, options={"verify_signature": False})
    now = int(time.time())
    assert _me(platform, user.token) == 200
    variants = {
        "expired": {**claims, "exp": now - 60},
        "not yet valid": {**claims, "nbf": now + 3600},
        "another issuer": {**claims, "iss": "someone-else"},
        "no expiry": {k: v for k, v in claims.items() if k != "exp"},
        "old epoch": {**claims, "ep": claims["ep"] - 1},
    }
    for name, payload in variants.items():
        assert _me(platform, jwt.encode(payload, secret, algorithm="HS256")) == 401, name
    for alg in ("HS384", "HS512"):
        assert _me(platform, jwt.encode(claims, secret, algorithm=alg)) == 401, alg
    header, _, signature = user.token.split(".")
    other = platform.new_user()
    other_body = other.token.split(".")[1]
    assert _me(platform, f"{header}.{other_body}.{signature}") == 401  # payload swapped


def test_a_deleted_user_is_401_at_once(platform: Platform) -> None:
    user = platform.new_user(points=60)
    key = user.client.post("/user/api-keys", json={"name": "k"}).json()["data"]["key"]
    cli(platform.env, "user", "delete", user.name, "--yes")
    assert _me(platform, user.token) == 401
    r = httpx.get(platform.url + "/user/points/consumption/balance", headers={"X-API-Key": key})
    assert r.status_code == 401
    platform.audit()


def test_login_is_throttled_per_name_and_per_address(tmp_path: object) -> None:
    from pathlib import Path

    platform = Platform(
        Path(str(tmp_path)),
        SHENGTU_LOGIN_FAILURES_PER_WINDOW="3",
        SHENGTU_LOGIN_IP_FAILURES_PER_WINDOW="6",
    ).start()
    try:
        user = platform.new_user()
        codes = []
        for _ in range(5):
            r = httpx.post(
                platform.url + "/user/auth/login",
                json={"username": user.name, "password": "guess-guess"},
            )
            codes.append(r.status_code)
        assert codes == [401, 401, 401, 429, 429]
        r = httpx.post(
            platform.url + "/user/auth/login",
            json={"username": user.name, "password": user.password},
        )
        assert (
            r.status_code == 429
            and "登录失败次数过多" in r.json()["message"]
            and "retry-after" in r.headers
        )
    finally:
        platform.stop()


def test_no_route_lets_one_user_reach_another_users_things(audited: Platform) -> None:
    owner = audited.new_user(points=100)
    intruder = audited.new_user(points=100)
    task_no = owner.submit(modelName="sc_soraimg_text_1x1", prompt="我的私人任务")["data"]["taskNo"]
    key_id = owner.client.post("/user/api-keys", json={"name": "私钥"}).json()["data"]["id"]
    hook = owner.client.post("/user/webhooks", json={"url": "http://93.184.216.34/hook"}).json()
    message = owner.client.post(f"/user/webhooks/{hook['data']['id']}/test").json()["data"]
    owner.wait(task_no)
    with rig(audited, CASES["epay"]) as pay:
        order_no = pay.order(owner, amount=100, points=10)
    tier_id = pay.tier(100, 10)
    ids = {
        "order_no": order_no,
        "method_key": pay.method,
        "tier_id": str(tier_id),
        "webhook_id": str(hook["data"]["id"]),
        "message_id": message["id"],
        "task_no": task_no,
        "key_id": str(key_id),
        "taskNo": task_no,
        "channel_id": "1",
        "model_name": "sc_soraimg_text_1x1",
        "user_id": str(owner.client.get("/user/auth/me").json()["data"]["userId"]),
        "group_name": "default",
        # The operator's content-safety routes: refused to a user before any lookup.
        "word_id": "1",
        "event_id": "1",
    }

    spec = httpx.get(audited.url + "/openapi.json").json()
    walked = 0
    for path, methods in spec["paths"].items():
        if "{" not in path:
            continue
        concrete = path
        for name, value in ids.items():
            concrete = concrete.replace("{" + name + "}", value)
        assert "{" not in concrete, f"a route with an id this test does not know: {path}"
        # An admin's route refuses a user before it looks anything up.
        expected = 403 if path.startswith("/admin/") else 404
        for method in methods:
            # A body where a route takes one: the refusal must be about whose thing it is.
            body = {} if method in ("put", "post") else None
            r = intruder.client.request(method.upper(), concrete, json=body)
            assert r.status_code == expected, (method, path, r.status_code, r.text)
            walked += 1
    assert walked >= 2
    # Lists and the ledger show the intruder only their own.
    assert intruder.client.get("/user/ai/tasks/list").json()["data"]["total"] == 0
    assert intruder.client.get("/user/api-keys").json()["data"] == []
    records = intruder.client.get("/user/points/consumption/records").json()["data"]["records"]
    assert all(r["taskNo"] is None for r in records)
    assert intruder.client.get("/user/pay/orders").json()["data"]["total"] == 0
    # And the owner's things are as they were.
    assert owner.task(task_no)["status"] == "completed"
    assert [k["id"] for k in owner.client.get("/user/api-keys").json()["data"]] == [key_id]
    assert owner.balance() == 70
    assert owner.client.get(f"/user/pay/orders/{order_no}").json()["data"]["status"] == "pending"
