"""The sweep deletes each unused upload once however many sweeps race, and results past
their retention answer 410 (issue 11's security review, finding 5)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
from PIL import Image

from tests.support import Platform, cli


def test_two_racing_sweeps_delete_each_unused_upload_once(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_UPLOAD_UNUSED_HOURS="0.0003").start()  # ~1 s
    try:
        user = platform.new_user(points=35 * 3)
        urls = []
        for i in range(12):
            png = io.BytesIO()
            Image.new("RGB", (8, 8), (i, 0, 0)).save(png, format="PNG")
            up = user.client.post(
                "/user/files/upload", files={"file": ("a.png", png.getvalue(), "image/png")}
            ).json()
            urls.append(up["data"]["url"])
        used = urls[:3]
        for url in used:
            task = user.submit(modelName="sc_soraimg_img2img_1x1", prompt="用它", imageUrl=url)
            assert task["code"] == 200, task
        time.sleep(1.5)
        sweeps = [platform.spawn("sweep"), platform.spawn("sweep")]
        for proc in sweeps:
            proc.proc.wait(60)
        counts = []
        for proc in sweeps:
            text = proc.log_text()
            counts.append(int(text.split("已删除未使用的上传 ")[1].split(" ")[0]))
        assert sum(counts) == 9, counts
        for url in used:
            assert httpx.get(url).status_code == 200
        for url in urls[3:]:
            assert httpx.get(url).status_code == 404
        files = list((tmp_path / "files" / "uploads").rglob("*.png"))
        assert len(files) == 3
        # A swept upload cannot be used any more, and the refusal costs nothing.
        late = user.submit(modelName="sc_soraimg_img2img_1x1", prompt="晚了", imageUrl=urls[5])
        assert late["code"] == 400 and "不存在" in late["message"]
        platform.audit()
    finally:
        platform.stop()


def test_results_past_their_retention_answer_410(tmp_path: Path) -> None:
    platform = Platform(tmp_path, SHENGTU_RESULT_RETENTION_DAYS="0.00001").start()  # ~0.9 s
    try:
        user = platform.new_user(points=30)
        done = user.wait(
            user.submit(modelName="sc_soraimg_text_1x1", prompt="会过期")["data"]["taskNo"]
        )
        assert done["status"] == "completed" and done["resultExpired"] is False
        assert httpx.get(done["resultUrl"]).status_code == 200
        time.sleep(1.5)
        assert "过期结果图片 1 个" in cli(platform.env, "sweep").stdout
        gone = httpx.get(done["resultUrl"])
        assert gone.status_code == 410 and gone.json()["code"] == 410, gone.text
        assert "保存期限" in gone.json()["message"]
        after = user.task(done["taskNo"])
        assert after["status"] == "completed" and after["resultExpired"] is True
        assert not list((tmp_path / "files" / "results").rglob("*.png"))
        platform.audit()
    finally:
        platform.stop()
