"""Hostile bodies get a clean 4xx in the envelope and change nothing."""

from __future__ import annotations

import io
import json

import httpx
from PIL import Image

from tests.chaos import report
from tests.support import Platform, User

SUBMIT = "/user/ai/tasks/submit"


def _unchanged(user: User, balance: int) -> None:
    assert user.balance() == balance
    assert user.client.get("/user/ai/tasks/list").json()["data"]["total"] == 0


def _post_raw(user: User, body: bytes) -> tuple[int, dict[str, object]]:
    r = user.client.post(SUBMIT, content=body, headers={"Content-Type": "application/json"})
    return r.status_code, r.json()


def test_huge_and_deep_bodies(audited: Platform) -> None:
    user = audited.new_user(points=100)
    deep = b'{"modelName": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    status, body = _post_raw(user, deep)
    assert status in (400, 413) and body["code"] == status, body
    status, body = _post_raw(
        user, b'{"modelName": "x", "prompt": "' + b"a" * (20 * 1024 * 1024) + b'"}'
    )
    assert (status, body["message"]) == (413, "请求体过大"), body
    _unchanged(user, 100)


def test_megabyte_prompt_and_ten_thousand_images(audited: Platform) -> None:
    user = audited.new_user(points=100)
    status, body = _post_raw(
        user, json.dumps({"modelName": "sc_soraimg_text_1x1", "prompt": "猫" * 1_000_000}).encode()
    )
    assert status == 400 and "prompt 过长" in str(body["message"])
    urls = [f"https://example.com/{i}.png" for i in range(10_000)]
    for image_url in (urls, json.dumps(urls)):
        status, body = _post_raw(
            user,
            json.dumps(
                {"modelName": "sc_soraimg_img2img_1x1", "prompt": "猫", "imageUrl": image_url}
            ).encode(),
        )
        assert status == 400 and "参考图最多 10 张" in str(body["message"])
    for value in (None, 1, 1.5, True, {"a": 1}, [1, 2]):
        status, body = _post_raw(user, json.dumps({"modelName": value, "prompt": "猫"}).encode())
        assert status == 400 and body["data"] is None, (value, body)
    _unchanged(user, 100)


def test_uploads_that_lie_or_explode(platform: Platform) -> None:
    user = platform.new_user()
    bomb = io.BytesIO()
    Image.new("1", (30_000, 30_000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 1024 * 1024  # small on the wire, 900 megapixels inside
    cases = [
        (bomb.getvalue(), "bomb.png", ("疑似解压炸弹", "尺寸过大")),
        (b"GIF89a" + b"\x00" * 100, "fake.gif", ("不是有效图片",)),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "header-only.png", ("不是有效图片",)),
        (b"%PDF-1.4 not a picture", "doc.png", ("不是有效图片", "不支持的图片格式")),
    ]
    for data, name, words in cases:
        r = user.client.post("/user/files/upload", files={"file": (name, data, "image/png")})
        assert r.status_code == 400, (name, r.text)
        assert any(w in r.json()["message"] for w in words), (name, r.json())
    report("hostile uploads", cases=len(cases) + 1, faults=len(cases) + 1)
    big = user.client.post(
        "/user/files/upload", files={"file": ("big.png", b"\x00" * (11 * 1024 * 1024), "image/png")}
    )
    assert big.status_code in (400, 413) and big.json()["code"] == big.status_code


def test_nul_bytes_are_refused_at_the_edge(audited: Platform) -> None:
    """A NUL byte anywhere a client can put one: 400 in the envelope, on every database."""
    user = audited.new_user(points=100)
    assert audited.admin is not None
    nul = "a\x00b"
    posts: list[tuple[httpx.Client, str, dict[str, object]]] = [
        (user.client, SUBMIT, {"modelName": "sc_soraimg_text_1x1", "prompt": nul}),
        (user.client, SUBMIT, {"modelName": nul, "prompt": "猫"}),
        (
            user.client,
            SUBMIT,
            {"modelName": "sc_soraimg_img2img_1x1", "prompt": "猫", "imageUrl": [nul]},
        ),
        (
            user.client,
            SUBMIT,
            {
                "modelName": "sc_soraimg_img2img_1x1",
                "prompt": "猫",
                "imageUrl": json.dumps(["https://example.com/a\x00.png"]),
            },
        ),
        (user.client, "/user/auth/register", {"username": nul, "password": "pw-123456"}),
        (user.client, "/user/auth/login", {"username": user.name, "password": nul}),
        (user.client, "/user/auth/password", {"oldPassword": user.password, "newPassword": nul}),
        (user.client, "/user/api-keys", {"name": nul}),
        (
            audited.admin.client,
            "/admin/points/grant",
            {"username": user.name, "amount": 1, "note": nul},
        ),
    ]
    for client, path, body in posts:
        r = client.post(path, json=body)
        assert r.status_code == 400 and "非法字符" in r.json()["message"], (path, body, r.text)
    for path in (
        "/user/ai/tasks/TASK-1%00",
        "/user/ai/tasks/list?status=%00",
        "/user/points/consumption/records?x=a%00b",
    ):
        r = user.client.get(path)
        assert r.status_code == 400 and r.json()["code"] == 400, (path, r.text)
    report("NUL bytes", cases=len(posts) + 3, faults=len(posts) + 3)
    assert user.client.get("/user/api-keys").json()["data"] == []
    assert user.client.get("/user/auth/me").json()["code"] == 200  # the password did not change
    _unchanged(user, 100)
