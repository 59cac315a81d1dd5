"""``/ws/tasks`` pushes every status and progress change of the user's own tasks."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support import Platform

ORDER = ["created", "queued", "processing", "completed"]


def _ws_url(platform: Platform, token: str) -> str:
    return platform.url.replace("http://", "ws://") + f"/ws/tasks?token={token}"


def test_events_follow_a_task_to_the_end(audited: Platform) -> None:
    user = audited.new_user(points=100)
    stranger = audited.new_user(points=100)
    with (
        connect(_ws_url(audited, user.token)) as ws,
        connect(_ws_url(audited, stranger.token)) as other,
    ):
        assert json.loads(ws.recv(5))["event"] == "connected"
        assert json.loads(other.recv(5))["event"] == "connected"
        task_no = user.submit(modelName="sc_soraimg_text_1x1", prompt="推送测试")["data"]["taskNo"]
        events = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            event = json.loads(ws.recv(30))
            assert event["event"] == "task.updated"
            events.append(event["data"])
            if event["data"]["status"] in ("completed", "failed"):
                break
        with pytest.raises(TimeoutError):
            other.recv(0.5)  # nothing of another user's task
    assert {e["taskNo"] for e in events} == {task_no}
    statuses = [e["status"] for e in events]
    assert statuses[0] == "created" and statuses[-1] == "completed"
    assert [ORDER.index(s) for s in statuses] == sorted(ORDER.index(s) for s in statuses)
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 100
    assert events[-1]["resultUrl"].startswith(audited.url + "/files/results/")
    assert events[-1] == user.task(task_no)


def test_api_key_works_and_a_bad_token_is_refused(platform: Platform) -> None:
    user = platform.new_user()
    key = user.client.post("/user/api-keys", json={"name": "ws"}).json()["data"]["key"]
    with connect(_ws_url(platform, key)) as ws:
        assert json.loads(ws.recv(5))["event"] == "connected"
    with pytest.raises(ConnectionClosed) as closed, connect(_ws_url(platform, "nope")) as ws:
        ws.recv(5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_a_bearer_header_works_where_the_query_has_no_token(platform: Platform) -> None:
    user = platform.new_user()
    url = platform.url.replace("http://", "ws://") + "/ws/tasks"
    with connect(url, additional_headers={"Authorization": f"Bearer {user.token}"}) as ws:
        assert (
            json.loads(ws.recv(5))["data"]["userId"]
            == user.client.get("/user/auth/me").json()["data"]["userId"]
        )
    for header in ("Bearer ", f"Basic {user.token}", user.token):
        with (
            pytest.raises(ConnectionClosed) as closed,
            connect(url, additional_headers={"Authorization": header}) as ws,
        ):
            ws.recv(5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401, header
