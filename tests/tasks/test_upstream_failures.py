"""Every way the sandbox upstream can fail ends ``failed``, in Chinese, with the points back."""

from __future__ import annotations

import httpx
import pytest

from tests.support import Platform


@pytest.mark.parametrize(
    ("directive", "fragment"),
    [
        ("[sandbox:fail]", "内容安全策略"),
        ("[sandbox:error500]", "上游服务错误(HTTP 500)"),
        ("[sandbox:timeout]", "任务超时"),
        ("[sandbox:badimage]", "不是有效图片"),
    ],
)
def test_each_failure_refunds(audited: Platform, directive: str, fragment: str) -> None:
    user = audited.new_user(points=100)
    body = user.submit(modelName="sc_soraimg_text_1x1", prompt=f"一只猫 {directive}")
    assert body["code"] == 200, body
    assert user.balance() == 70
    done = user.wait(body["data"]["taskNo"], timeout=30)
    assert done["status"] == "failed", done
    assert fragment in done["errorMessage"], done["errorMessage"]
    assert done["resultUrl"] is None and done["completeTime"] is not None
    assert user.balance() == 100

    records = user.client.get("/user/points/consumption/records?page=1&size=10").json()["data"]
    kinds = [(r["kind"], r["delta"], r["taskNo"]) for r in records["records"]]
    task_no = body["data"]["taskNo"]
    assert kinds[:2] == [("refund", 30, task_no), ("consume", -30, task_no)]


def test_error500_is_retried_a_bounded_number_of_times(audited: Platform) -> None:
    user = audited.new_user(points=30)
    task_no = user.submit(modelName="sc_soraimg_text_1x1", prompt="[sandbox:error500] 猫")["data"][
        "taskNo"
    ]
    done = user.wait(task_no)
    assert "已尝试 3 次" in done["errorMessage"]
    log = audited.server.log_text()
    attempts = [
        line for line in log.splitlines() if task_no in line and '"upstream_response"' in line
    ]
    assert len(attempts) == 3, attempts


def test_failure_is_logged_with_the_reason(audited: Platform) -> None:
    user = audited.new_user(points=30)
    task_no = user.submit(modelName="sc_soraimg_text_1x1", prompt="[sandbox:fail] 猫")["data"][
        "taskNo"
    ]
    user.wait(task_no)
    lines = [
        ln for ln in audited.server.log_text().splitlines() if task_no in ln and "task_failed" in ln
    ]
    assert lines and "内容安全策略" in lines[0]  # UTF-8 unescaped in the JSON log
    assert httpx.get(audited.url + "/healthz").json()["code"] == 200
