"""Results and uploads in S3-compatible storage (moto's server, started here)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from PIL import Image

from tests.support import Platform, drawn, free_port

BUCKET = "shengtu-test"


@pytest.fixture
def s3_endpoint(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("moto_server") or str(
        Path(__import__("sys").executable).parent / "moto_server"
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(endpoint, timeout=0.5)
                break
            except httpx.HTTPError:
                __import__("time").sleep(0.1)
        _client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.kill()
        proc.wait(5)


def _client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


def _s3_env(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "SHENGTU_STORAGE": "s3",
        "SHENGTU_S3_ENDPOINT": endpoint,
        "SHENGTU_S3_BUCKET": BUCKET,
        "SHENGTU_S3_REGION": "us-east-1",
        "SHENGTU_S3_ACCESS_KEY": "test",
        "SHENGTU_S3_SECRET_KEY": "test",
        "SHENGTU_S3_ADDRESSING_STYLE": "path",
        **extra,
    }


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def test_signed_urls_behind_our_permanent_urls(tmp_path: Path, s3_endpoint: str) -> None:
    platform = Platform(tmp_path, **_s3_env(s3_endpoint)).start()
    try:
        user = platform.new_user(points=100)
        upload = user.client.post(
            "/user/files/upload", files={"file": ("a.png", _png(), "image/png")}
        ).json()
        assert upload["code"] == 200, upload
        upload_url = upload["data"]["url"]
        assert upload_url.startswith(platform.url + "/files/uploads/")

        task = user.submit(
            modelName="sc_soraimg_img2img_1x1", prompt="参考图在 S3", imageUrl=upload_url
        )
        done = user.wait(task["data"]["taskNo"])
        assert done["status"] == "completed", done
        assert done["resultUrl"].startswith(platform.url + "/files/results/")

        redirect = httpx.get(done["resultUrl"])
        assert redirect.status_code == 307
        assert (
            redirect.headers["location"].startswith(s3_endpoint)
            and "Signature" in redirect.headers["location"]
        )
        picture = httpx.get(done["resultUrl"], follow_redirects=True)
        assert Image.open(io.BytesIO(picture.content)).size == drawn(1024, 1024)
        stored = httpx.get(upload_url, follow_redirects=True).content
        assert Image.open(io.BytesIO(stored)).tobytes() == Image.open(io.BytesIO(_png())).tobytes()

        # /files/ signs only keys the platform stored, not whatever else is in the bucket.
        s3 = _client(s3_endpoint)
        s3.put_object(Bucket=BUCKET, Key="backups/operator.sql", Body=b"secret")
        s3.put_object(Bucket=BUCKET, Key="uploads/2020/01/01/planted.png", Body=_png())
        for key in ("backups/operator.sql", "uploads/2020/01/01/planted.png"):
            refused = httpx.get(f"{platform.url}/files/{key}")
            assert refused.status_code == 404 and refused.json()["code"] == 404, key

        keys = [o["Key"] for o in _client(s3_endpoint).list_objects_v2(Bucket=BUCKET)["Contents"]]
        assert any(k.startswith("results/") for k in keys) and any(
            k.startswith("uploads/") for k in keys
        )
        assert not (tmp_path / "files").exists()  # nothing written locally
        platform.audit()
    finally:
        platform.stop()


def test_public_base_url_is_the_result_url(tmp_path: Path, s3_endpoint: str) -> None:
    # A public base URL means the operator made the bucket readable (policy or CDN).
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/*",
            }
        ],
    }
    _client(s3_endpoint).put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    public = f"{s3_endpoint}/{BUCKET}"
    platform = Platform(tmp_path, **_s3_env(s3_endpoint, SHENGTU_S3_PUBLIC_BASE_URL=public)).start()
    try:
        user = platform.new_user(points=100)
        done = user.wait(
            user.submit(modelName="sc_soraimg_text_3x2", prompt="公开地址")["data"]["taskNo"]
        )
        assert done["resultUrl"].startswith(public + "/results/")
        picture = httpx.get(done["resultUrl"])
        assert Image.open(io.BytesIO(picture.content)).size == drawn(1536, 1024)
    finally:
        platform.stop()


def test_racing_sweeps_on_s3_delete_each_unused_upload_once(
    tmp_path: Path, s3_endpoint: str
) -> None:
    platform = Platform(
        tmp_path, **_s3_env(s3_endpoint, SHENGTU_UPLOAD_UNUSED_HOURS="0.0003")
    ).start()
    try:
        user = platform.new_user(points=35 * 2)
        urls = []
        for i in range(8):
            png = io.BytesIO()
            Image.new("RGB", (8, 8), (i, 9, 9)).save(png, format="PNG")
            up = user.client.post(
                "/user/files/upload", files={"file": ("a.png", png.getvalue(), "image/png")}
            ).json()
            urls.append(up["data"]["url"])
        for url in urls[:2]:
            task = user.submit(modelName="sc_soraimg_img2img_1x1", prompt="用它", imageUrl=url)
            assert task["code"] == 200, task
        __import__("time").sleep(1.5)
        sweeps = [platform.spawn("sweep"), platform.spawn("sweep")]
        for proc in sweeps:
            assert proc.proc.wait(60) == 0, proc.log_text()
        counts = [int(p.log_text().split("已删除未使用的上传 ")[1].split(" ")[0]) for p in sweeps]
        assert sum(counts) == 6, counts
        listed = _client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix="uploads/")
        kept = sorted(obj["Key"] for obj in listed.get("Contents", []))
        assert kept == sorted(url.split("/files/", 1)[1] for url in urls[:2])
        for url in urls[2:]:
            assert httpx.get(url).status_code == 404
    finally:
        platform.stop()
