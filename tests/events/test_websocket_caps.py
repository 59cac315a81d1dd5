"""Free accounts share a bounded pool of a process's WebSockets (issue 20, item 8).

A free account is one never credited points but by the sign-up bonus (no operator grant
or adjustment, no redeemed code worth points). Together they hold at most
SHENGTU_WS_FREE_SHARE of SHENGTU_WS_MAX_PER_PROCESS, so sign-ups alone cannot take the
sockets of paying users.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support import Platform, User


def _ws(platform: Platform, user: User) -> ClientConnection:
    return connect(platform.url.replace("http://", "ws://") + f"/ws/tasks?token={user.token}")


def _connected(ws: ClientConnection) -> None:
    assert json.loads(ws.recv(5))["event"] == "connected"


def _refused(platform: Platform, user: User) -> tuple[int, str]:
    with _ws(platform, user) as ws:
        try:
            message = ws.recv(10)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None
            return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError(f"the socket was let in: {message!r}")


def _alive(ws: ClientConnection) -> bool:
    return ws.ping().wait(5)


def test_free_accounts_share_a_bounded_pool_of_websockets(
    own_platform: Callable[..., Platform],
) -> None:
    with own_platform(
        worker=False,
        SHENGTU_WS_MAX_PER_PROCESS="4",
        SHENGTU_WS_FREE_SHARE="0.5",
        # A sign-up bonus gives every account a balance: that makes no one a paying user.
        SHENGTU_REGISTER_POINTS="10",
    ) as platform:
        (invitation,) = platform.make_codes(1, 0)
        (bought,) = platform.make_codes(1, 5)
        free = [platform.new_user() for _ in range(3)]
        assert free[0].balance() == 10
        assert free[2].redeem(invitation)["code"] == 200  # worth no points: still free
        granted = platform.new_user(points=5)  # an operator's grant
        redeemer = platform.new_user()
        assert redeemer.redeem(bought)["code"] == 200

        with _ws(platform, free[0]) as a, _ws(platform, free[1]) as b:
            _connected(a), _connected(b)
            # The free pool (4 × 0.5) is full, though the process has room.
            code, reason = _refused(platform, free[2])
            assert code == 4429 and "免费账户" in reason and "上限" in reason
            # Paying users still get in, up to the process's cap.
            with _ws(platform, granted) as c, _ws(platform, redeemer) as d:
                _connected(c), _connected(d)
                code, reason = _refused(platform, granted)
                assert code == 4429 and "服务器上限" in reason
                # The refusals closed no one else's socket.
                assert all(_alive(ws) for ws in (a, b, c, d))
        # A free socket closed gives its place back (once the server has seen it go).
        deadline = time.monotonic() + 10
        while True:
            with _ws(platform, free[2]) as ws:
                try:
                    _connected(ws)
                    break
                except ConnectionClosed:
                    if time.monotonic() > deadline:
                        raise
            time.sleep(0.1)
