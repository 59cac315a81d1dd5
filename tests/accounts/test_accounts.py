"""Register, login, tokens, API keys, and the CLI's account commands."""

from __future__ import annotations

import httpx
import jwt

from tests.support import Platform, cli


def test_register_login_me(platform: Platform) -> None:
    r = httpx.post(
        platform.url + "/user/auth/register", json={"username": "小明_01", "password": "p@ssw0rd!"}
    )
    assert r.json()["code"] == 200 and r.json()["data"]["username"] == "小明_01"
    again = httpx.post(
        platform.url + "/user/auth/register", json={"username": "小明_01", "password": "x" * 9}
    )
    assert again.status_code == 409 and "已被占用" in again.json()["message"]

    wrong = httpx.post(
        platform.url + "/user/auth/login", json={"username": "小明_01", "password": "wrong-pass"}
    )
    assert wrong.status_code == 401 and wrong.json()["message"] == "用户名或密码错误"
    login = httpx.post(
        platform.url + "/user/auth/login", json={"username": "小明_01", "password": "p@ssw0rd!"}
    )
    data = login.json()["data"]
    assert data["tokenType"] == "Bearer" and data["expiresIn"] == 24 * 3600
    header = jwt.get_unverified_header(data["token"])
    assert header["alg"] == "HS256"
    me = httpx.get(
        platform.url + "/user/auth/me", headers={"Authorization": f"Bearer {data['token']}"}
    )
    assert me.json()["data"]["username"] == "小明_01"


def test_bad_registrations(platform: Platform) -> None:
    for body, fragment in [
        ({"username": "ab", "password": "longenough"}, "用户名须为"),
        ({"username": "ok_name", "password": "short"}, "密码长度须为"),
        ({"username": "bad name", "password": "longenough"}, "用户名须为"),
        ({"password": "longenough"}, "缺少必填参数 username"),
    ]:
        r = httpx.post(platform.url + "/user/auth/register", json=body)
        assert r.status_code == 400 and fragment in r.json()["message"], r.json()


def test_missing_or_bad_credentials_are_401(platform: Platform) -> None:
    for headers in [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer sk-not-a-real-key"},
        {"X-API-Key": "sk-nope"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
    ]:
        r = httpx.get(platform.url + "/user/points/consumption/balance", headers=headers)
        assert r.status_code == 401, headers
        assert (
            r.json()["code"] == 401 and "未登录" in r.json()["message"]
        ) or "API Key" in r.json()["message"]
        assert r.json()["data"] is None


def test_token_signed_with_another_key_or_algorithm_is_refused(platform: Platform) -> None:
    user = platform.new_user()
    claims = jwt.decode(user.token, options={"verify_signature": False})
    forged = jwt.encode(claims, "another-secret-another-secret-123", algorithm="HS256")
    none_alg = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    for token in (forged, none_alg):
        r = httpx.get(platform.url + "/user/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401


def test_api_keys_are_shown_once_work_in_both_headers_and_stop_when_deleted(
    platform: Platform,
) -> None:
    user = platform.new_user(points=60)
    created = user.client.post("/user/api-keys", json={"name": "我的应用"}).json()["data"]
    raw = created["key"]
    assert raw.startswith("sk-") and len(raw) > 40
    listed = user.client.get("/user/api-keys").json()["data"]
    assert [k["name"] for k in listed] == ["我的应用"]
    assert "key" not in listed[0] and raw not in str(listed)

    for headers in ({"Authorization": f"Bearer {raw}"}, {"X-API-Key": raw}):
        r = httpx.get(platform.url + "/user/points/consumption/balance", headers=headers)
        assert r.json()["data"]["balance"] == 60

    other = platform.new_user()
    assert other.client.delete(f"/user/api-keys/{created['id']}").status_code == 404
    assert user.client.delete(f"/user/api-keys/{created['id']}").json()["code"] == 200
    r = httpx.get(platform.url + "/user/points/consumption/balance", headers={"X-API-Key": raw})
    assert r.status_code == 401
    assert user.client.get("/user/api-keys").json()["data"] == []


def test_password_change_ends_old_tokens(platform: Platform) -> None:
    user = platform.new_user()
    r = user.client.post(
        "/user/auth/password", json={"oldPassword": user.password, "newPassword": "a-new-password"}
    )
    assert r.json()["code"] == 200
    assert user.client.get("/user/auth/me").status_code == 401
    assert platform.login(user.name, "a-new-password").token


def test_cli_account_commands(platform: Platform) -> None:
    out = cli(
        platform.env, "user", "create", "cli_user", "--password", "cli-password", "--points", "90"
    ).stdout
    assert "cli_user" in out
    assert (
        "余额: 100"
        in cli(platform.env, "points", "grant", "cli_user", "10", "--note", "测试").stdout
    )
    token = cli(platform.env, "token", "cli_user").stdout.strip()
    key = cli(platform.env, "apikey", "create", "cli_user").stdout.strip()
    assert key.startswith("sk-")
    for headers in ({"Authorization": f"Bearer {token}"}, {"X-API-Key": key}):
        r = httpx.get(platform.url + "/user/points/consumption/balance", headers=headers)
        assert r.json()["data"]["balance"] == 100
    missing = cli(platform.env, "token", "nobody", check=False)
    assert missing.returncode == 1 and "用户 nobody 不存在" in missing.stderr
    platform.audit()
