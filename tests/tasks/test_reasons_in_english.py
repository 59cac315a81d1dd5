"""A failed task says why in Chinese, and in English to a client that asks
(``Accept-Language: en``): on the hot read and on the FastAPI route alike, in the task list,
in the WebSocket's events and in the OpenAI routes' failure; for every kind of failure the
sandbox upstream can cause, a content refusal among them."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from shengtu.providers.sandbox.common import FAIL_MESSAGE
from tests.edge.test_hot_reads import served, through_routes
from tests.support import Platform, ok

HAN = re.compile(r"[\u4e00-\u9fff]")
EN = {"Accept-Language": "en-US,en;q=0.9,zh-CN;q=0.8"}
ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
SUCHUANG = "sc_soraimg_text_1x1"
# 速创 is a Chinese upstream: its refusal is its own words, quoted as it wrote them.
UPSTREAMS_OWN_WORDS = FAIL_MESSAGE.split(":", 1)[1]
# case: (directive, words of the reason in Chinese, words of it in English). The platform's
# task deadline is 8 s (tests/support.py).
FAULTS = {
    "fail": ("[sandbox:fail]", "内容安全策略", "Generation failed: " + UPSTREAMS_OWN_WORDS),
    "error500": (
        "[sandbox:error500]",
        "提交上游失败:上游服务错误(HTTP 500)(已尝试 3 次)",
        "Sending the task upstream failed: upstream server error (HTTP 500) (tried 3 times)",
    ),
    "timeout": ("[sandbox:timeout]", "任务超时", "Timed out: the upstream did not finish"),
    "badimage": (
        "[sandbox:badimage]",
        "上游返回的结果不是有效图片",
        "The upstream's result is not a valid picture: the content is not a valid picture",
    ),
    "result404": (
        "[sandbox:result404]",
        "结果图片转存失败:下载结果图片失败: HTTP 404",
        "Storing the result picture failed: downloading the result picture failed: HTTP 404",
    ),
    "garbage": (
        "[sandbox:garbage]",
        "(最近一次错误:上游返回了无法解析的内容)",
        "(last error: the upstream answered with something that cannot be parsed)",
    ),
}
MODERATED = (
    "内容审核未通过:上游判定生成的图片含不当内容",
    "Rejected by content moderation: the upstream found inappropriate content in the picture",
)


def _ws(
    platform: Platform, token: str, headers: dict[str, str], query: str = ""
) -> ClientConnection:
    url = platform.url.replace("http://", "ws://") + f"/ws/tasks?token={token}{query}"
    ws = connect(url, additional_headers=headers)
    assert json.loads(ws.recv(5))["event"] == "connected"
    return ws


def _failures(ws: ClientConnection, task_nos: set[str], timeout: float) -> dict[str, str]:
    """Each task's errorMessage in the event of its failure."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while set(found) != task_nos and time.monotonic() < deadline:
        event = json.loads(ws.recv(timeout))
        data = event["data"]
        if data["taskNo"] in task_nos and data["status"] == "failed":
            found[data["taskNo"]] = data["errorMessage"]
    return found


def _reason(answer: tuple[Any, ...]) -> str:
    assert answer[0] == 200, answer
    return str(json.loads(answer[1])["data"]["errorMessage"])


def test_a_failed_task_says_why_in_the_language_asked_for(
    audited: Platform, request: pytest.FixtureRequest
) -> None:
    # A refusal of the content, said by a protocol that says so (通义万相's double).
    sandbox, key = audited.sandbox_upstream("sk-" + secrets.token_hex(16))
    model = "i18n-wanx-" + secrets.token_hex(3)
    audited.add_model(model, task_type="text_to_image", cost=20, upstream_model="x")
    # The shared platform's catalog is the spec's again after this test.
    request.addfinalizer(
        lambda: ok(audited.admin_client.put(f"/admin/models/{model}", json={"enabled": False}))
    )
    audited.add_channel(
        protocol="dashscope",
        name=model,
        baseUrl=sandbox,
        addKeys=[key],
        models=[{"modelName": model, "upstreamModel": "wanx2.1-t2i-turbo"}],
    )
    user = audited.new_user(points=1000)
    # A page cannot set the socket's headers: its ``lang`` says, over the browser's own.
    sockets = {
        "en": _ws(audited, user.token, EN),
        "zh": _ws(audited, user.token, {}),
        "en by lang": _ws(audited, user.token, ZH, "&lang=en"),
        "zh by lang": _ws(audited, user.token, EN, "&lang=zh"),
    }
    try:
        cases = {name: (SUCHUANG, f"猫 {d}", None) for name, (d, _, _) in FAULTS.items()}
        numbers = user.submit_all({**cases, "moderated": (model, "猫 [sandbox:fail]", None)})
        expected = {
            **{name: (zh, en) for name, (_, zh, en) in FAULTS.items()},
            "moderated": MODERATED,
        }
        for task_no in numbers.values():
            assert user.wait(task_no, timeout=30)["status"] == "failed"
        events = {name: _failures(ws, set(numbers.values()), 10) for name, ws in sockets.items()}
    finally:
        for ws in sockets.values():
            ws.close()

    jwt = {"Authorization": f"Bearer {user.token}"}
    requests = [
        (f"/user/ai/tasks/{n}", {**jwt, **language})
        for n in numbers.values()
        for language in ({}, ZH, EN)
    ]
    fast = served(audited, requests)
    assert fast == through_routes(audited, requests)  # the hot path answers as the route
    listed = {
        language: {
            t["taskNo"]: t["errorMessage"]
            for t in user.client.get(
                "/user/ai/tasks/list", params={"size": 20}, headers=headers
            ).json()["data"]["records"]
        }
        for language, headers in (("zh", ZH), ("en", EN))
    }
    for i, (case, task_no) in enumerate(numbers.items()):
        chinese, by_header, english = (_reason(a) for a in fast[3 * i : 3 * i + 3])
        zh_words, en_words = expected[case]
        assert zh_words in chinese and chinese == by_header, (case, chinese)
        assert en_words in english, (case, english)
        assert not HAN.search(english.replace(UPSTREAMS_OWN_WORDS, "")), (case, english)
        assert listed["zh"][task_no] == chinese and listed["en"][task_no] == english
        for name, seen in events.items():
            assert seen[task_no] == (english if name.startswith("en") else chinese), (name, case)
    assert user.balance() == 1000


def test_the_openai_routes_failure_quotes_the_reason_in_english(audited: Platform) -> None:
    user = audited.new_user(points=100)
    key = user.client.post("/user/api-keys", json={"name": "i18n"}).json()["data"]["key"]
    body = {"model": "gpt-image-1", "prompt": "[sandbox:error500] 猫"}
    answers = {
        language: httpx.post(
            audited.url + "/v1/images/generations",
            json=body,
            headers={"Authorization": f"Bearer {key}", **headers},
            timeout=60,
        )
        for language, headers in (("zh", {}), ("en", EN))
    }
    assert [a.status_code for a in answers.values()] == [502, 502]
    assert answers["zh"].json()["error"]["message"] == (
        "生成失败:提交上游失败:上游服务错误(HTTP 500)(已尝试 3 次)(积分已退还)"
    )
    assert answers["en"].json()["error"]["message"] == (
        "Generation failed: sending the task upstream failed: upstream server error "
        "(HTTP 500) (tried 3 times) (points refunded)"
    )
    assert user.balance() == 100
