"""Sign-up is limited per address (behind trusted proxies only) and in total, across API
processes; registration can be closed or need a code (issue 11's security review,
finding 2)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support import Platform, RedisServer, cli


def _register(platform: Platform, name: str, password: str = "a-long-password", **headers: str):  # type: ignore[no-untyped-def]
    return httpx.post(
        platform.url + "/user/auth/register",
        json={"username": name, "password": password},
        headers=headers,
    )


def test_a_registration_flood_is_refused_per_address(tmp_path: Path) -> None:
    platform = Platform(
        tmp_path,
        SHENGTU_REGISTER_PER_ADDRESS="3",
        SHENGTU_TRUSTED_PROXIES="127.0.0.1",
    ).start()
    try:
        codes = [
            _register(platform, f"flood_{i}", **{"X-Forwarded-For": "203.0.113.7"}).status_code
            for i in range(5)
        ]
        assert codes == [200, 200, 200, 429, 429]
        refused = _register(platform, "flood_x", **{"X-Forwarded-For": "203.0.113.7"})
        assert "注册过于频繁" in refused.json()["message"] and "retry-after" in refused.headers
        other = _register(platform, "neighbour", **{"X-Forwarded-For": "198.51.100.9"})
        assert other.status_code == 200, other.json()
        # The last hop is the trusted proxy's to write; what a client put before it is not
        # believed past the first untrusted address.
        spoof = _register(platform, "spoofer", **{"X-Forwarded-For": "10.9.9.9, 203.0.113.7"})
        assert spoof.status_code == 429
    finally:
        platform.stop()


def test_forwarded_for_is_ignored_without_trusted_proxies(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_REGISTER_PER_ADDRESS="2").start()
    try:
        codes = [
            _register(platform, f"xff_{i}", **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code
            for i in range(3)
        ]
        assert codes == [200, 200, 429]
    finally:
        platform.stop()


def test_the_registration_limit_holds_across_two_api_processes(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path).start()
    try:
        platform = Platform(
            tmp_path / "p",
            worker=False,
            SHENGTU_REDIS_URL=redis.url,
            SHENGTU_REGISTER_PER_ADDRESS="4",
        )
        platform.data_dir.mkdir()
        platform.start()
        second = platform.serve_another()
        try:
            codes = []
            for i in range(8):
                url = platform.url if i % 2 == 0 else second
                r = httpx.post(
                    url + "/user/auth/register",
                    json={"username": f"both_{i}", "password": "a-long-password"},
                )
                codes.append(r.status_code)
            assert codes.count(200) == 4 and codes[4:] == [429] * 4, codes
        finally:
            platform.stop()
    finally:
        redis.stop()


def test_register_modes_closed_and_code(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_REGISTER_MODE="code").start()
    try:
        missing = _register(platform, "no_code")
        assert missing.status_code == 400 and "邀请码" in missing.json()["message"]
        code = cli(platform.env, "codes", "create", "--points", "50").stdout.strip()
        assert len(code) >= 32  # 160 bits in base32
        wrong = httpx.post(
            platform.url + "/user/auth/register",
            json={"username": "bad_code", "password": "a-long-password", "code": "ST" + "A" * 32},
        )
        assert wrong.status_code == 400 and "兑换码无效" in wrong.json()["message"]
        # The failed sign-up left no user behind: the name is still free.
        assert _register_with(platform, "bad_code", code).status_code == 200
        user = platform.login("bad_code", "a-long-password")
        assert user.balance() == 50
        reused = _register_with(platform, "second_try", code)
        assert reused.status_code == 400 and "已被使用" in reused.json()["message"]
        login = httpx.post(
            platform.url + "/user/auth/login",
            json={"username": "second_try", "password": "a-long-password"},
        )
        assert login.status_code == 401  # no half-made account
        platform.audit()
    finally:
        platform.stop()
    closed = Platform(tmp_path / "closed", SHENGTU_REGISTER_MODE="closed")
    closed.data_dir.mkdir()
    closed.start()
    try:
        r = _register(closed, "anyone")
        assert r.status_code == 403 and "未开放注册" in r.json()["message"]
    finally:
        closed.stop()


def _register_with(platform: Platform, name: str, code: str) -> httpx.Response:
    return httpx.post(
        platform.url + "/user/auth/register",
        json={"username": name, "password": "a-long-password", "code": code},
    )
