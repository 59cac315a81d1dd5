"""A WebSocket lives as long as its credential, within caps, and says why it closes
(issue 11's security review, finding 7); a disabled user's closes at once (issue 13)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support import Platform, ok


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


def test_a_disabled_users_open_websocket_closes_at_once(audited: Platform) -> None:
    user = audited.new_user()
    url = audited.url.replace("http://", "ws://") + f"/ws/tasks?token={user.token}"
    with connect(url) as ws:
        assert json.loads(ws.recv(timeout=5))["event"] == "connected"
        started = time.monotonic()
        ok(audited.admin_client.put(f"/admin/users/{user.user_id()}", json={"active": False}))
        try:
            ws.recv(timeout=5)  # the periodic re-check is 30 s away: only the push is this quick
            raise AssertionError("the WebSocket stayed open")
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4401
        assert time.monotonic() - started < 5
