"""Who may act as the operator: an admin signed in with a login token, never an API key
(issue 20, finding 1), and never so as to lock the admin out."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.support import Platform, User


def _ok(answer: httpx.Response) -> Any:
    body = answer.json()
    assert body["code"] == 200, body
    return body["data"]


def _admin(platform: Platform) -> User:
    assert platform.admin is not None
    return platform.admin


def test_an_admins_api_key_is_refused_on_every_admin_operation(audited: Platform) -> None:
    admin = _admin(audited)
    me = _ok(admin.client.get("/user/auth/me"))
    # The finding's key: narrow (one model, a 10-point quota), yet it passed every /admin route.
    key = _ok(
        admin.client.post(
            "/user/api-keys",
            json={
                "name": "泄露的脚本",
                "quotaPoints": 10,
                "allowedModels": ["sc_soraimg_text_1x1"],
            },
        )
    )["key"]
    by_key = audited.client(key)
    alice = audited.new_user(points=5)
    alice_id = _ok(alice.client.get("/user/auth/me"))["userId"]

    spec = httpx.get(audited.url + "/openapi.json").json()
    walked = 0
    for path, methods in spec["paths"].items():
        if not path.startswith("/admin"):
            continue
        # Real ids where a route takes one: the refusal must not depend on a lookup failing.
        concrete = path.replace("{user_id}", str(alice_id))
        concrete = re.sub(r"\{[^}]+\}", "1", concrete)
        for method in methods:
            body = {} if method in ("put", "post", "patch") else None
            r = by_key.request(method.upper(), concrete, json=body)
            assert r.status_code in (401, 403), (method, path, r.status_code, r.text)
            envelope = r.json()
            assert envelope["code"] == r.status_code and envelope["data"] is None, envelope
            walked += 1
    assert walked >= 30, walked

    # What the finding did with such a key, one by one: each refused, nothing changed.
    grant = by_key.post("/admin/points/grant", json={"username": alice.name, "amount": 1000})
    assert grant.status_code == 403
    assert grant.json()["message"] == "管理接口需要使用登录 Token,不能使用 API Key"
    assert alice.balance() == 5
    promote = by_key.put(f"/admin/users/{alice_id}", json={"role": "admin"})
    assert promote.status_code == 403
    assert _ok(alice.client.get("/user/auth/me"))["role"] == "user"
    takeover = by_key.post(f"/admin/users/{me['userId']}/password", json={"password": "x" * 16})
    assert takeover.status_code == 403
    assert _ok(admin.client.get("/user/auth/me"))["userId"] == me["userId"]
    # The same operations with the admin's login token still work.
    _ok(admin.client.post("/admin/points/grant", json={"username": alice.name, "amount": 7}))
    assert alice.balance() == 12


def test_an_admin_cannot_reset_their_own_password_without_the_old_one(
    platform: Platform,
) -> None:
    admin = _admin(platform)
    own_id = _ok(admin.client.get("/user/auth/me"))["userId"]
    r = admin.client.post(f"/admin/users/{own_id}/password", json={"password": "y" * 16})
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "不能重置自己的密码:请在账号设置中用原密码修改"
    # The admin's token still works, and the old password still signs in.
    _ok(admin.client.get("/user/auth/me"))
    assert platform.login(admin.name, admin.password).token
    # Another user's reset is unchanged.
    other = platform.new_user()
    other_id = _ok(other.client.get("/user/auth/me"))["userId"]
    _ok(admin.client.post(f"/admin/users/{other_id}/password", json={"password": "z" * 16}))
    assert platform.login(other.name, "z" * 16).token


def test_an_api_key_cannot_delete_its_owners_keys(platform: Platform) -> None:
    user = platform.new_user()
    first = _ok(user.client.post("/user/api-keys", json={"name": "一"}))
    second = _ok(user.client.post("/user/api-keys", json={"name": "二"}))
    by_key = platform.client(first["key"])
    for target in (second["id"], first["id"]):
        r = by_key.delete(f"/user/api-keys/{target}")
        assert r.status_code == 403, r.text
        assert r.json()["message"] == "删除 API Key需要使用登录 Token,不能使用 API Key"
    assert sorted(k["id"] for k in _ok(user.client.get("/user/api-keys"))) == sorted(
        [first["id"], second["id"]]
    )
    # The login token still revokes, and the revoked key stops working.
    _ok(user.client.delete(f"/user/api-keys/{second['id']}"))
    assert platform.client(second["key"]).get("/user/auth/me").status_code == 401
