"""A password change revokes the API keys (unless asked to keep them), and an API key
cannot make keys or change the password (issue 11's security review, finding 9)."""

from __future__ import annotations

from tests.support import Platform


def test_a_password_change_revokes_keys_and_keys_cannot_make_keys(platform: Platform) -> None:
    user = platform.new_user()
    key = user.client.post("/user/api-keys", json={"name": "k"}).json()["data"]["key"]
    by_key = platform.client(key)
    refused = by_key.post("/user/api-keys", json={"name": "more"})
    assert refused.status_code == 403 and "登录 Token" in refused.json()["message"]
    refused = by_key.post(
        "/user/auth/password", json={"oldPassword": user.password, "newPassword": "x" * 12}
    )
    assert refused.status_code == 403
    r = user.client.post(
        "/user/auth/password", json={"oldPassword": user.password, "newPassword": "y" * 12}
    )
    assert r.json()["data"] == {"revokedApiKeys": 1}
    assert by_key.get("/user/auth/me").status_code == 401
    # keepApiKeys keeps them, as the docs say.
    fresh = platform.login(user.name, "y" * 12)
    kept = fresh.client.post("/user/api-keys", json={"name": "kept"}).json()["data"]["key"]
    r = fresh.client.post(
        "/user/auth/password",
        json={"oldPassword": "y" * 12, "newPassword": "z" * 12, "keepApiKeys": True},
    )
    assert r.json()["data"] == {"revokedApiKeys": 0}
    assert platform.client(kept).get("/user/auth/me").status_code == 200
