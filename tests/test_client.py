"""The Python SDK (``shengtu.client``) and the ``shengtu gen/tasks/balance`` commands."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from shengtu.client import AsyncClient, Client, ShengtuAPIError, Task
from shengtu.client import core as client_core
from tests.support import Platform, User, cli, png


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
