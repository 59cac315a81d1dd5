"""Login is counted before the password is checked, names folded, and successes limited
too (issue 11's security review, finding 3)."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx

from tests.support import Platform


def test_parallel_wrong_passwords_lock_the_name_after_the_limit(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_LOGIN_FAILURES_PER_WINDOW="10").start()
    try:
        user = platform.new_user()

        def guess(i: int) -> int:
            name = user.name.upper() if i % 2 else user.name
            return httpx.post(
                platform.url + "/user/auth/login",
                json={"username": name, "password": f"wrong-{i}"},
                timeout=60,
            ).status_code

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            codes = list(pool.map(guess, range(500)))
        assert codes.count(401) == 10 and codes.count(429) == 490, sorted(set(codes))
        right = httpx.post(
            platform.url + "/user/auth/login",
            json={"username": user.name, "password": user.password},
        )
        assert right.status_code == 429
    finally:
        platform.stop()


def test_successful_logins_are_limited_too(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_LOGIN_SUCCESSES_PER_WINDOW="3").start()
    try:
        user = platform.new_user()  # logs in once
        body = {"username": user.name, "password": user.password}
        codes = [
            httpx.post(platform.url + "/user/auth/login", json=body).status_code for _ in range(3)
        ]
        assert codes == [200, 200, 429]
    finally:
        platform.stop()
