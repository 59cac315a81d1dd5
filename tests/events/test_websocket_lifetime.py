"""A WebSocket lives as long as its credential, within caps, and says why it closes
(issue 11's security review, finding 7)."""

from __future__ import annotations

import time
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support import Platform


def _ws(platform: Platform, token: str):  # type: ignore[no-untyped-def]
    return connect(platform.url.replace("http://", "ws://") + f"/ws/tasks?token={token}")


def _closed_with(ws, timeout: float = 10.0) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ws.recv(max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        except ConnectionClosed as exc:
            assert exc.rcvd is not None
            return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError("the socket stayed open")


def test_websockets_end_with_their_credential_and_have_caps(tmp_path: Path) -> None:
    platform = Platform(
        tmp_path,
        SHENGTU_WS_RECHECK_SECONDS="0.5",
        SHENGTU_WS_MAX_PER_USER="2",
        SHENGTU_WS_IDLE_SECONDS="3",
    ).start()
    try:
        user = platform.new_user()
        with _ws(platform, user.token) as first, _ws(platform, user.token) as second:
            first.recv(5), second.recv(5)
            with _ws(platform, user.token) as third:
                code, reason = _closed_with(third)
                assert code == 4429 and "上限" in reason
            r = user.client.post(
                "/user/auth/password",
                json={"oldPassword": user.password, "newPassword": "another-password"},
            )
            assert r.json()["code"] == 200
            code, reason = _closed_with(first)
            assert code == 4401 and "登录已失效" in reason
        fresh = platform.login(user.name, "another-password")
        with _ws(platform, fresh.token) as idle:
            idle.recv(5)
            code, reason = _closed_with(idle, timeout=10)
            assert code == 4408 and "空闲" in reason
    finally:
        platform.stop()
