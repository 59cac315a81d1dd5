"""A deleted or disabled user's credentials stop at once: a deleted user's token never
opens the next account (ids come back on SQLite), and disabling bans at once while
enabling lifts it (issue 11's security review, finding 1)."""

from __future__ import annotations

import httpx
import jwt

from tests.support import Platform, cli


def _me(platform: Platform, token: str) -> httpx.Response:
    return httpx.get(platform.url + "/user/auth/me", headers={"Authorization": f"Bearer {token}"})


def test_a_deleted_users_token_never_opens_a_new_account(platform: Platform) -> None:
    mallory = platform.new_user()
    mallory_id = _me(platform, mallory.token).json()["data"]["userId"]
    cli(platform.env, "user", "delete", mallory.name, "--yes")
    victim = platform.new_user()
    victim_id = _me(platform, victim.token).json()["data"]["userId"]
    assert victim_id > mallory_id, "a user id was handed out twice"
    assert _me(platform, mallory.token).status_code == 401
    # Even a token for the victim's id, signed right, is refused without the victim's nonce.
    claims = jwt.decode(mallory.token, options={"verify_signature": False})
    forged = jwt.encode(
        {**claims, "sub": str(victim_id)}, platform.env["SHENGTU_JWT_SECRET"], algorithm="HS256"
    )
    assert _me(platform, forged).status_code == 401
    assert _me(platform, victim.token).json()["data"]["username"] == victim.name


def test_disable_bans_at_once_and_enable_lifts_it(platform: Platform) -> None:
    user = platform.new_user(points=30)
    key = user.client.post("/user/api-keys", json={"name": "k"}).json()["data"]["key"]
    cli(platform.env, "user", "disable", user.name)
    assert _me(platform, user.token).status_code == 401
    balance = platform.url + "/user/points/consumption/balance"
    assert httpx.get(balance, headers={"X-API-Key": key}).status_code == 401
    login = httpx.post(
        platform.url + "/user/auth/login", json={"username": user.name, "password": user.password}
    )
    assert login.status_code == 401
    cli(platform.env, "user", "enable", user.name)
    assert _me(platform, user.token).status_code == 200
    assert httpx.get(balance, headers={"X-API-Key": key}).json()["data"]["balance"] == 30
