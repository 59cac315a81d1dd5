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


def test_accept_language_en_gives_english_messages(platform: Platform) -> None:
    user = platform.new_user()
    body = {"modelName": "sc_soraimg_text_1x1", "prompt": "猫"}
    chinese = user.client.post("/user/ai/tasks/submit", json=body).json()
    assert chinese["message"] == "积分不足:需要 30 积分,当前余额 0 积分"
    prefers_chinese = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
    assert (
        user.client.post("/user/ai/tasks/submit", json=body, headers=prefers_chinese).json()[
            "message"
        ]
        == chinese["message"]
    )

    en = {"Accept-Language": "en-US,en;q=0.9,zh;q=0.5"}
    answer = user.client.post("/user/ai/tasks/submit", json=body, headers=en)
    assert answer.status_code == 402
    assert answer.json() == {
        "code": 402,
        "message": "Insufficient points: 30 needed, balance 0",
        "data": None,
    }
    missing = user.client.post("/user/ai/tasks/submit", json={"prompt": "猫"}, headers=en).json()
    assert missing["message"] == "Invalid parameter: Missing required parameter modelName"
    # The hot read answers its own 404; it is English too.
    gone = user.client.get("/user/ai/tasks/TASK-none", headers=en).json()
    assert gone["message"] == "Task TASK-none does not exist"
    assert (
        httpx.get(platform.url + "/user/auth/me", headers=en)
        .json()["message"]
        .startswith("Not signed in")
    )
    # The OpenAI routes' errors, in their own shape.
    openai_error = httpx.post(
        platform.url + "/v1/images/generations",
        json={"prompt": "猫", "n": 9},
        headers={**en, "Authorization": f"Bearer {user.token}"},
    ).json()["error"]
    assert openai_error["message"] == "Invalid parameter: Parameter n must be at most 4"
    assert openai_error["param"] == "n"
    # Success stays as it was.
    assert user.client.get("/user/ai/models", headers=en).json()["message"] == "success"
