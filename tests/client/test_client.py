"""The Python SDK (``shengtu.client``) and the ``shengtu gen/tasks/balance`` commands."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from shengtu.client import AsyncClient, Client, ShengtuAPIError, Task
from shengtu.client import core as client_core
from tests.databases import ScratchDatabase
from tests.support import Platform, User, cli, free_port, png, serve_http


def api_key(user: User) -> str:
    return str(user.client.post("/user/api-keys", json={"name": "sdk"}).json()["data"]["key"])


class LosesTheFirstSubmitAnswer(httpx.HTTPTransport):
    """The server gets the submit and answers; the answer is lost on the way back."""

    def __init__(self) -> None:
        super().__init__()
        self.submits: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/tasks/submit"):
            self.submits.append(request.headers["idempotency-key"])
            if len(self.submits) == 1:
                response.read()
                raise httpx.ReadError("connection reset", request=request)
        return response


def test_the_sdk_generates_follows_progress_and_never_charges_a_retry_twice(
    audited: Platform, tmp_path: Path
) -> None:
    user = audited.new_user(points=100)
    transport = LosesTheFirstSubmitAnswer()
    with Client(audited.url, api_key(user), transport=transport) as client:
        assert "sc_soraimg_text_1x1" in [m.name for m in client.models()]
        seen: list[Task] = []
        task = client.generate("sc_soraimg_text_1x1", "重试的柴犬", on_progress=seen.append)
        assert task.status == "completed" and task.progress == 100 and task.result_url
        assert seen[-1].status == "completed"
        assert [t.progress for t in seen] == sorted(t.progress for t in seen)
        # The lost answer was retried under the same key: one task, one charge.
        assert len(transport.submits) == 2 and len(set(transport.submits)) == 1
        assert client.balance().balance == 70
        assert [t.task_no for t in client.tasks()] == [task.task_no]
        saved = client.download(task, tmp_path / "dog.png")
        assert Image.open(saved).size[0] > 0

        failed = client.generate("sc_soraimg_text_1x1", "[sandbox:fail] 猫")
        assert failed.status == "failed" and "内容安全" in (failed.error_message or "")
        assert client.balance().balance == 70
        with pytest.raises(ShengtuAPIError) as missing:
            client.download(failed, tmp_path / "none.png")
        assert missing.value.code == 404
        with pytest.raises(ShengtuAPIError) as bad:
            client.submit("no_such_model", "x")
        assert bad.value.code == 400 and "模型" in bad.value.message


def test_the_async_sdk_uploads_references_and_falls_back_to_polling(
    audited: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = audited.new_user(points=100)
    # No WebSocket to be had: the client polls instead.
    monkeypatch.setattr(client_core, "_ws_url", lambda _: "ws://127.0.0.1:9/nowhere")

    async def main() -> Task:
        async with AsyncClient(audited.url, api_key(user), poll_interval=0.2) as client:
            return await client.generate("sc_soraimg_img2img_1x1", "水彩", images=[png((32, 32))])

    task = asyncio.run(main())
    assert task.status == "completed" and task.task_type == "image_to_image"
    assert user.balance() == 65


def _shengtu(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(env, *args, check=False, cwd=cwd)


def test_shengtu_gen_tasks_and_balance_from_a_terminal(audited: Platform, tmp_path: Path) -> None:
    user = audited.new_user(points=100)
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("SHENGTU_")}
    missing = _shengtu(env, tmp_path, "balance")
    assert missing.returncode == 2 and "SHENGTU_API_KEY" in missing.stderr
    env.update(SHENGTU_API_URL=audited.url, SHENGTU_API_KEY=api_key(user))
    ref = tmp_path / "ref.png"
    ref.write_bytes(png((48, 48)))

    made = _shengtu(
        env,
        tmp_path,
        "gen",
        "雪中的狐狸",
        "-m",
        "sc_soraimg_img2img_1x1",
        "--image",
        str(ref),
        "-n",
        "2",
        "-o",
        "fox.png",
    )
    assert made.returncode == 0, made.stderr
    for name in ("fox-1.png", "fox-2.png"):
        assert Image.open(io.BytesIO((tmp_path / name).read_bytes())).width > 0
    assert "100%" in made.stderr and "已完成" in made.stderr
    listed = _shengtu(env, tmp_path, "tasks")
    assert listed.returncode == 0 and listed.stdout.count("completed") == 2
    shown = _shengtu(env, tmp_path, "balance")
    assert shown.returncode == 0 and shown.stdout.strip() == "30 积分"

    failed = _shengtu(env, tmp_path, "gen", "[sandbox:fail] 狐狸", "-m", "sc_soraimg_text_1x1")
    assert failed.returncode == 1 and "积分已退还" in failed.stderr
    broke = _shengtu(env, tmp_path, "gen", "狐狸", "-m", "sc_soraimg_text_1x1", "-n", "2")
    assert broke.returncode == 1 and "积分不足" in broke.stderr


class ResultHost:
    """A host on an origin of its own that serves the platform's pictures, as a CDN or a
    bucket's public URL would (``upstream``: it fetches them from there), or redirects
    every request to ``redirect_to``; it keeps each request's path and headers."""

    def __init__(self, *, upstream: str = "", redirect_to: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: list[tuple[str, dict[str, str]]] = []
        host, lock = self, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with lock:
                    host.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                got = httpx.get(upstream + self.path, timeout=30)
                self.send_response(got.status_code)
                self.send_header("Content-Type", got.headers.get("content-type", ""))
                self.send_header("Content-Length", str(len(got.content)))
                self.end_headers()
                self.wfile.write(got.content)

        self.server = serve_http(Handler, self.port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


CREDENTIALS = ("authorization", "x-api-key", "cookie")


def test_downloads_from_another_origin_carry_no_api_key(
    fresh_database: ScratchDatabase, tmp_path: Path
) -> None:
    """The platform's public base URL (a CDN, say) is another origin than the API's: the
    sync and async SDKs and ``shengtu gen`` fetch the pictures there, and through a
    redirect to yet another host, without the API key, while their API calls carry it."""
    platform = Platform(tmp_path, database_url=fresh_database.url)
    cdn = ResultHost(upstream=platform.url)
    # Another host again, that sends every picture on to the CDN.
    mirror = ResultHost(redirect_to=cdn.url)
    platform.env["SHENGTU_PUBLIC_BASE_URL"] = cdn.url
    platform.start()
    try:
        user = platform.new_user(points=100)
        key = api_key(user)
        with Client(platform.url, key) as client:
            task = client.generate("sc_soraimg_text_1x1", "远方的灯塔")
            assert task.result_url and task.result_url.startswith(cdn.url + "/files/")
            assert Image.open(client.download(task, tmp_path / "sync.png")).width > 0
            moved = dataclasses.replace(task, result_url=mirror.url + urlpath(task.result_url))
            assert Image.open(client.download(moved, tmp_path / "moved.png")).width > 0

        async def with_the_async_client() -> Task:
            async with AsyncClient(platform.url, key) as client:
                task = await client.generate("sc_soraimg_text_1x1", "异步的灯塔")
                await client.download(task, tmp_path / "async.png")
                moved = dataclasses.replace(task, result_url=mirror.url + urlpath(task.result_url))
                await client.download(moved, tmp_path / "async-moved.png")
                return task

        async_task = asyncio.run(with_the_async_client())
        assert Image.open(tmp_path / "async-moved.png").width > 0

        env: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("SHENGTU_")}
        env.update(SHENGTU_API_URL=platform.url, SHENGTU_API_KEY=key)
        made = _shengtu(env, tmp_path, "gen", "终端的灯塔", "-m", "sc_soraimg_text_1x1")
        assert made.returncode == 0, made.stderr
        assert Image.open(tmp_path / "out.png").width > 0
        cli_url = made.stdout.split("\t")[2].strip()
        assert cli_url.startswith(cdn.url + "/files/")

        picture_paths = [urlpath(u) for u in (task.result_url, async_task.result_url, cli_url)]
        assert [p for p, _ in mirror.seen] == [picture_paths[0], picture_paths[1]]
        assert sorted(p for p, _ in cdn.seen) == sorted(picture_paths + picture_paths[:2])
        for path, headers in cdn.seen + mirror.seen:
            leaked = [h for h in CREDENTIALS if h in headers]
            assert not leaked, f"{path} got {leaked}: {headers}"
        assert user.balance() == 10
        platform.audit()
    finally:
        platform.stop()
        cdn.close()
        mirror.close()


def urlpath(url: str | None) -> str:
    return httpx.URL(url or "").raw_path.decode()


def test_the_api_key_goes_to_the_base_url_origin_only(tmp_path: Path) -> None:
    """The key rides on calls to the base URL's scheme, host and port (a default port
    spelled either way) and on no other; a download carries it to no host at all."""
    seen: list[tuple[str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("authorization")))
        if request.url.path.startswith("/files/"):
            return httpx.Response(200, content=png())
        return httpx.Response(200, json={"code": 200, "data": {"balance": 5, "userId": 1}})

    mock = httpx.MockTransport(answer)
    # The base URL's own origin first, then four others.
    pictures = [
        "https://api.example.com/files/a.png",
        "http://api.example.com/files/a.png",
        "https://api.example.com:8443/files/a.png",
        "https://cdn.example.com/files/a.png",
        "https://api.example.com.evil.test/files/a.png",
    ]
    with Client("https://api.example.com", "sk-secret", transport=mock) as client:
        assert client.balance().balance == 5
        for url in pictures:
            task = Task.of({**DONE, "resultUrl": url})
            assert Image.open(client.download(task, tmp_path / "a.png")).width > 0
    balance_url = "https://api.example.com/user/points/consumption/balance"
    assert seen[0] == (balance_url, "Bearer sk-secret")
    assert seen[1:] == [(url, None) for url in pictures]

    # The client's auth, handed any URL: the key for the base URL's origin only.
    seen.clear()
    auth = client_core._KeyForOrigin("https://api.example.com/", "sk-secret")
    with httpx.Client(transport=mock, auth=auth) as http:
        for url in ["https://api.example.com:443/user/ai/models", *pictures]:
            http.get(url)
    assert [who for _, who in seen] == ["Bearer sk-secret"] * 2 + [None] * 4


DONE = {
    "taskNo": "TASK-1",
    "modelName": "sc_soraimg_text_1x1",
    "status": "completed",
    "taskType": "text_to_image",
}
