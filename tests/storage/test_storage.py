"""Uploads, our own URLs as reference images, and the file route."""

from __future__ import annotations

import io

import httpx
from PIL import Image

from tests.support import Platform, User, png


def _upload(
    user: User, data: bytes, name: str = "ref.png", ctype: str = "image/png"
) -> httpx.Response:
    return user.client.post("/user/files/upload", files={"file": (name, data, ctype)})


def test_upload_then_use_it_as_a_reference(audited: Platform) -> None:
    user = audited.new_user(points=100)
    picture = png()
    body = _upload(user, picture).json()
    assert body["code"] == 200, body
    data = body["data"]
    assert data["url"].startswith(audited.url + "/files/uploads/")
    assert (data["contentType"], data["width"], data["height"]) == ("image/png", 64, 48)
    # Stored re-encoded (no metadata): the same picture, not the same bytes.
    stored = httpx.get(data["url"]).content
    assert len(stored) == data["size"]
    assert Image.open(io.BytesIO(stored)).tobytes() == Image.open(io.BytesIO(picture)).tobytes()

    task = user.submit(
        modelName="sc_soraimg_img2img_1x1", prompt="参考上传的图", imageUrl=data["url"]
    )
    assert task["code"] == 200, task
    assert user.wait(task["data"]["taskNo"])["status"] == "completed"

    other = audited.new_user(points=100)
    refused = other.submit(
        modelName="sc_soraimg_img2img_1x1", prompt="偷用别人的图", imageUrl=data["url"]
    )
    assert refused["code"] == 400 and "不属于当前用户" in refused["message"]
    assert other.balance() == 100


def test_uploads_that_are_not_pictures_are_refused(platform: Platform) -> None:
    user = platform.new_user()
    for data, name in [
        (b"<html>not a png</html>", "fake.png"),
        (b"", "empty.png"),
        (png()[:60], "truncated.png"),
    ]:
        r = _upload(user, data, name)
        assert r.status_code == 400 and "不是有效图片" in r.json()["message"], (name, r.json())
    r = user.client.post("/user/files/upload", data={"x": "1"})
    assert r.status_code == 400 and "缺少必填参数 file" in r.json()["message"]


def test_file_route_serves_only_stored_files(platform: Platform) -> None:
    for path in [
        "/files/../shengtu.db",
        "/files/%2e%2e/shengtu.db",
        "/files/jwt_secret",
        "/files/results/none.png",
    ]:
        r = httpx.get(platform.url + path)
        assert r.status_code == 404, path
        assert b"shengtu" not in r.content.lower() or r.json()["code"] == 404
