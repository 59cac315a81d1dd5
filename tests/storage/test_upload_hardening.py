"""Uploads: a small file that declares a huge picture is refused before it is decoded,
locations are stripped, and each user has a daily quota (issue 11's security review,
finding 5)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
from PIL import Image

from tests.support import Platform


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_pixel_bomb_is_refused_without_decoding_it(platform: Platform) -> None:
    user = platform.new_user()
    bomb = io.BytesIO()
    Image.new("1", (8000, 7999)).save(bomb, format="PNG", optimize=True)
    assert len(bomb.getvalue()) < 300 * 1024
    pid = platform.server.proc.pid
    before = _peak_rss_kib(pid)
    for _ in range(4):
        r = user.client.post(
            "/user/files/upload", files={"file": ("bomb.png", bomb.getvalue(), "image/png")}
        )
        assert r.status_code == 400 and "图片尺寸过大" in r.json()["message"], r.json()
    grew_mib = (_peak_rss_kib(pid) - before) / 1024
    assert grew_mib < 40, f"the server's peak memory grew {grew_mib:.0f} MiB"


def test_uploads_lose_their_exif_location(platform: Platform) -> None:
    user = platform.new_user()
    img = Image.new("RGB", (40, 30), (10, 200, 10))
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (39.0, 54.0, 27.0), 3: "E", 4: (116.0, 23.0, 17.0)}  # GPS
    exif[0x010F] = "Camera Maker"
    src = io.BytesIO()
    img.save(src, format="JPEG", exif=exif)
    assert Image.open(io.BytesIO(src.getvalue())).getexif()
    r = user.client.post(
        "/user/files/upload", files={"file": ("gps.jpg", src.getvalue(), "image/jpeg")}
    )
    assert r.json()["code"] == 200, r.json()
    stored = httpx.get(r.json()["data"]["url"]).content
    assert not Image.open(io.BytesIO(stored)).getexif()
    assert b"Camera Maker" not in stored


def test_the_daily_upload_quota(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_UPLOAD_DAILY_COUNT="2").start()
    try:
        user = platform.new_user()
        png = io.BytesIO()
        Image.new("RGB", (8, 8)).save(png, format="PNG")
        codes = [
            user.client.post(
                "/user/files/upload", files={"file": ("a.png", png.getvalue(), "image/png")}
            ).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]
    finally:
        platform.stop()
