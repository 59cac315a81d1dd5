"""The envelope for every failure, with the HTTP status equal to its code."""

from __future__ import annotations

import httpx

from tests.support import Platform


def test_unknown_route_and_method(platform: Platform) -> None:
    r = httpx.get(platform.url + "/no/such/route")
    assert r.status_code == 404 and r.json() == {"code": 404, "message": "接口不存在", "data": None}
    r = httpx.delete(platform.url + "/user/auth/login")
    assert r.status_code == 405 and r.json()["code"] == 405


def test_malformed_bodies_are_400(platform: Platform) -> None:
    user = platform.new_user()
    for content in (b"{not json", b"[1,2]", b'"text"', '{"modelName": "\xff"}'.encode("latin-1")):
        r = user.client.post(
            "/user/ai/tasks/submit", content=content, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400, (content, r.text)
        body = r.json()
        assert (
            body["code"] == 400 and body["message"].startswith("参数错误") and body["data"] is None
        )


def test_healthz_and_request_id(platform: Platform) -> None:
    r = httpx.get(platform.url + "/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.json()["data"]["status"] == "ok"
    assert r.headers["x-request-id"] == "abc-123"
    assert len(httpx.get(platform.url + "/healthz").headers["x-request-id"]) == 16
