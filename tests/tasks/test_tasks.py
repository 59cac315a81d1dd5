"""Submitting, querying and listing tasks over real HTTP against the sandbox upstream."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support import Platform, User, drawn

TASK_NO = re.compile(r"^TASK-\d{17}-\d{4}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
SPEC_FIELDS = {
    "taskNo",
    "modelName",
    "status",
    "taskType",
    "progress",
    "promptSnippet",
    "imageUrl",
    "resultUrl",
    "createTime",
    "completeTime",
    "errorMessage",
}


def test_text_to_image_completes_with_a_stored_picture(rich_user: User, audited: Platform) -> None:
    body = rich_user.submit(
        modelName="sc_soraimg_text_3x2", prompt="壮丽的山脉日出,金色阳光洒满山谷,风景摄影风格"
    )
    assert body["code"] == 200 and body["message"] == "success", body
    created = body["data"]
    assert TASK_NO.match(created["taskNo"])
    assert created["status"] == "created" and created["progress"] == 0
    assert set(created) >= SPEC_FIELDS
    assert rich_user.balance() == 1000 - 30

    done = rich_user.wait(created["taskNo"])
    assert done["status"] == "completed", done
    assert done["progress"] == 100
    assert done["promptSnippet"] == "壮丽的山脉日出..."
    assert done["imageUrl"] is None and done["errorMessage"] is None
    assert TIME.match(done["createTime"]) and TIME.match(done["completeTime"])
    assert done["resultUrl"].startswith(audited.url + "/files/results/")

    picture = httpx.get(done["resultUrl"])
    assert picture.status_code == 200
    img = Image.open(__import__("io").BytesIO(picture.content))
    assert img.format == "PNG" and img.size == drawn(1536, 1024)
    assert "壮丽的山脉日出" in img.text["prompt"]  # type: ignore[attr-defined]
    assert rich_user.balance() == 970


@pytest.mark.parametrize(
    ("image_url", "expected_echo"),
    [
        ("https://example.com/photo.jpg", "https://example.com/photo.jpg"),
        (
            '["https://example.com/ref1.jpg","https://example.com/ref2.jpg"]',
            '["https://example.com/ref1.jpg", "https://example.com/ref2.jpg"]',
        ),
        (
            ["https://example.com/a.jpg", "https://example.com/b.jpg", "https://example.com/c.jpg"],
            json.dumps([f"https://example.com/{c}.jpg" for c in "abc"]),
        ),
    ],
    ids=["one-url", "json-array-string", "real-array"],
)
def test_image_to_image_takes_every_image_url_form(
    rich_user: User, image_url: object, expected_echo: str
) -> None:
    body = rich_user.submit(
        modelName="sc_soraimg_img2img_2x3", prompt="转换为水彩画风格", imageUrl=image_url
    )
    assert body["code"] == 200, body
    assert body["data"]["taskType"] == "image_to_image"
    assert body["data"]["imageUrl"] == expected_echo
    done = rich_user.wait(body["data"]["taskNo"])
    assert done["status"] == "completed"
    img = Image.open(__import__("io").BytesIO(httpx.get(done["resultUrl"]).content))
    assert img.size == drawn(1024, 1536)
    assert rich_user.balance() == 1000 - 35


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"modelName": "sc_soraimg_text_1x1"}, "prompt 不能为空"),
        ({"modelName": "sc_soraimg_text_1x1", "prompt": "   "}, "prompt 不能为空"),
        ({"modelName": "sc_soraimg_text_1x1", "prompt": "猫" * 4001}, "prompt 过长"),
        ({"modelName": "no_such_model", "prompt": "猫"}, "模型 no_such_model 不存在或已停用"),
        ({"prompt": "猫"}, "缺少必填参数 modelName"),
        (
            {
                "modelName": "sc_soraimg_text_1x1",
                "prompt": "猫",
                "imageUrl": "https://example.com/a.png",
            },
            "文生图模型 sc_soraimg_text_1x1 不接受参考图",
        ),
        ({"modelName": "sc_soraimg_img2img_1x1", "prompt": "猫"}, "需要至少一张参考图"),
        (
            {"modelName": "sc_soraimg_img2img_1x1", "prompt": "猫", "imageUrl": ""},
            "需要至少一张参考图",
        ),
        (
            {
                "modelName": "sc_soraimg_img2img_1x1",
                "prompt": "猫",
                "imageUrl": [f"https://example.com/{i}.png" for i in range(11)],
            },
            "参考图最多 10 张",
        ),
        (
            {
                "modelName": "sc_soraimg_img2img_1x1",
                "prompt": "猫",
                "imageUrl": '["https://a.com/x.png"',
            },
            "不是合法的 JSON 数组",
        ),
        (
            {
                "modelName": "sc_soraimg_img2img_1x1",
                "prompt": "猫",
                "imageUrl": "ftp://example.com/a.png",
            },
            "只支持 http 和 https",
        ),
        (
            {
                "modelName": "sc_soraimg_img2img_1x1",
                "prompt": "猫",
                "imageUrl": "http://127.0.0.1/a.png",
            },
            "内网或保留地址",
        ),
        (
            {
                "modelName": "sc_soraimg_img2img_1x1",
                "prompt": "猫",
                "imageUrl": "http://169.254.169.254/latest",
            },
            "内网或保留地址",
        ),
        (
            {
                "modelName": "sc_soraimg_img2img_1x1",
                "prompt": "猫",
                "imageUrl": ["https://example.com/ok.png", "http://10.0.0.8/x.png"],
            },
            "内网或保留地址",
        ),
        (
            {
                "modelName": "sc_soraimg_img2img_1x1",
                "prompt": "猫",
                "imageUrl": "http://localhost:8081/x.png",
            },
            "内网或保留地址",
        ),
        ({"modelName": "sc_soraimg_text_1x1", "prompt": 123}, "prompt 必须是字符串"),
    ],
)
def test_bad_submits_get_a_clear_400_and_change_nothing(
    audited: Platform, body: dict[str, object], fragment: str
) -> None:
    user = audited.new_user(points=100)
    response = user.client.post("/user/ai/tasks/submit", json=body)
    envelope = response.json()
    assert response.status_code == 400 and envelope["code"] == 400, envelope
    assert fragment in envelope["message"], envelope["message"]
    assert envelope["data"] is None
    assert user.balance() == 100
    assert user.client.get("/user/ai/tasks/list").json()["data"]["total"] == 0


def test_list_pages_and_filters(audited: Platform) -> None:
    user = audited.new_user(points=1000)
    numbers = []
    for i in range(3):
        numbers.append(
            user.submit(modelName="sc_soraimg_text_1x1", prompt=f"猫 {i}")["data"]["taskNo"]
        )
    numbers.append(
        user.submit(
            modelName="sc_soraimg_img2img_1x1", prompt="狗", imageUrl="https://example.com/d.png"
        )["data"]["taskNo"]
    )
    for n in numbers:
        user.wait(n)

    page = user.client.get("/user/ai/tasks/list?page=1&size=2").json()["data"]
    assert set(page) == {"records", "total", "size", "current", "pages"}
    assert (page["total"], page["size"], page["current"], page["pages"]) == (4, 2, 1, 2)
    assert [r["taskNo"] for r in page["records"]] == numbers[::-1][:2]

    text = user.client.get("/user/ai/tasks/list?page=1&size=10&taskType=text_to_image").json()
    assert text["data"]["total"] == 3
    assert {r["taskType"] for r in text["data"]["records"]} == {"text_to_image"}
    images = user.client.get("/user/ai/tasks/list?page=1&size=10&taskType=image_to_image").json()
    assert [r["taskNo"] for r in images["data"]["records"]] == [numbers[3]]
    done = user.client.get("/user/ai/tasks/list?page=1&size=10&status=completed").json()
    assert done["data"]["total"] == 4
    assert user.client.get("/user/ai/tasks/list?status=failed").json()["data"]["total"] == 0

    for query, fragment in [
        ("taskType=video", "taskType 只能是"),
        ("status=done", "status 只能是"),
        ("page=0", "page 不能小于 1"),
        ("size=1000", "size 不能大于 100"),
        ("size=abc", "size 必须是整数"),
    ]:
        r = user.client.get(f"/user/ai/tasks/list?{query}")
        assert r.status_code == 400 and fragment in r.json()["message"], (query, r.json())


def test_another_users_task_is_not_found(audited: Platform) -> None:
    owner = audited.new_user(points=100)
    other = audited.new_user(points=100)
    task_no = owner.submit(modelName="sc_soraimg_text_1x1", prompt="私密的猫")["data"]["taskNo"]
    r = other.client.get(f"/user/ai/tasks/{task_no}")
    assert r.status_code == 404 and r.json()["code"] == 404
    assert "不存在" in r.json()["message"]
    assert other.client.get("/user/ai/tasks/list").json()["data"]["total"] == 0
    assert owner.wait(task_no)["status"] == "completed"


def test_unknown_task_is_404(platform: Platform) -> None:
    user = platform.new_user()
    r = user.client.get("/user/ai/tasks/TASK-20251026153045123-4567")
    assert r.status_code == 404
    assert r.json() == {
        "code": 404,
        "message": "任务 TASK-20251026153045123-4567 不存在",
        "data": None,
    }


def test_models_are_the_spec_catalog(platform: Platform) -> None:
    user = platform.new_user()
    body = user.client.get("/user/ai/models").json()
    assert body["code"] == 200
    rows = {m["modelName"]: m for m in body["data"]}
    assert len(rows) == 8
    assert rows["sc_soraimg_text_auto"] == {
        "modelName": "sc_soraimg_text_auto",
        "description": "速创生图 文生图-自动比例",
        "pointsCost": 30,
        "taskType": "text_to_image",
        "aspectRatio": "auto",
    }
    assert rows["sc_soraimg_img2img_3x2"] == {
        "modelName": "sc_soraimg_img2img_3x2",
        "description": "速创生图 图生图-横图(3:2)",
        "pointsCost": 35,
        "taskType": "image_to_image",
        "aspectRatio": "3:2",
    }
    for ratio in ("auto", "1x1", "2x3", "3x2"):
        assert rows[f"sc_soraimg_text_{ratio}"]["pointsCost"] == 30
        assert rows[f"sc_soraimg_img2img_{ratio}"]["pointsCost"] == 35


def test_cancel_refunds_only_what_the_upstream_never_took(tmp_path: Path) -> None:
    """A task not yet sent upstream cancels with its points back; one the upstream accepted
    (or a worker is sending right now) answers 409 with why, and runs on: a submit → cancel
    loop must not buy upstream jobs with the operator's money."""
    platform = Platform(tmp_path, worker=False).start()
    try:
        user = platform.new_user(points=100)
        waiting = user.submit(modelName="sc_soraimg_text_1x1", prompt="取消我")["data"]
        r = user.client.post(f"/user/ai/tasks/{waiting['taskNo']}/cancel")
        assert r.status_code == 200, r.json()
        assert r.json()["data"]["status"] == "failed"
        assert r.json()["data"]["errorMessage"] == "用户已取消任务"
        assert user.balance() == 100
        again = user.client.post(f"/user/ai/tasks/{waiting['taskNo']}/cancel")
        assert again.status_code == 409 and "已结束" in again.json()["message"]

        # A worker takes the next one upstream: accepted there, it is no longer ours to undo.
        accepted = user.submit(modelName="sc_soraimg_text_1x1", prompt="[sandbox:timeout] 晚了")
        worker = platform.spawn("worker")
        deadline = time.monotonic() + 20
        while user.task(accepted["data"]["taskNo"])["status"] == "created":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        late = user.client.post(f"/user/ai/tasks/{accepted['data']['taskNo']}/cancel")
        assert late.status_code == 409 and "上游费用已产生" in late.json()["message"], late.json()
        assert user.balance() == 70
        # It still ends (here at its deadline), refunded by the usual rule.
        assert user.wait(accepted["data"]["taskNo"], timeout=30)["status"] == "failed"
        assert user.balance() == 100
        worker.stop()
        platform.audit()
    finally:
        platform.stop()


def test_cancel_waits_for_a_worker_that_is_sending_the_task(tmp_path: Path) -> None:
    """While a worker holds a created task (its submit in flight), cancel answers 409."""
    platform = Platform.with_sandbox_process(
        tmp_path, worker=True, SHENGTU_UPSTREAM_TIMEOUT="3", SHENGTU_TASK_DEADLINE="20"
    ).start()
    try:
        user = platform.new_user(points=100)
        task_no = user.submit(
            modelName="sc_soraimg_text_1x1", prompt="[sandbox:slowsubmit] 提交中"
        )["data"]["taskNo"]
        time.sleep(1.0)  # the worker has claimed it and waits on the slow upstream
        r = user.client.post(f"/user/ai/tasks/{task_no}/cancel")
        assert r.status_code == 409 and "正在提交给上游" in r.json()["message"], r.json()
        assert user.task(task_no)["status"] == "created"
        assert user.balance() == 70
    finally:
        platform.stop()
