"""The OpenAI images API, driven by the official ``openai`` package, sync and async."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import io
import json
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.support import Platform, User, png


def api_key(user: User) -> str:
    body = user.client.post("/user/api-keys", json={"name": "openai"}).json()
    assert body["code"] == 200, body
    return str(body["data"]["key"])


def picture(url: str) -> Image.Image:
    r = httpx.get(url)
    assert r.status_code == 200, r.text
    return Image.open(io.BytesIO(r.content))


def test_the_openai_sdk_generates_edits_and_meets_clear_errors(audited: Platform) -> None:
    user = audited.new_user(points=1000)
    client = openai.OpenAI(base_url=audited.url + "/v1", api_key=api_key(user), max_retries=0)

    names = [m.id for m in client.models.list()]
    assert "gpt-image-1" in names and "sc_soraimg_text_1x1" in names

    # An alias and a size choose the aspect-ratio model; its price is charged.
    wide = client.images.generate(model="gpt-image-1", prompt="海边的灯塔", size="1536x1024")
    assert len(wide.data) == 1 and wide.data[0].url
    assert wide.data[0].url.startswith(audited.url + "/files/")
    image = picture(wide.data[0].url)
    assert image.width > image.height
    assert user.balance() == 970

    # n=2 in b64_json: two pictures, charged together.
    pair = client.images.generate(
        model="sc_soraimg", prompt="竹林", n=2, size="1024x1024", response_format="b64_json"
    )
    assert len(pair.data) == 2
    for item in pair.data:
        assert item.b64_json and item.url is None
        decoded = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        assert decoded.width == decoded.height
    assert user.balance() == 910
    tasks = user.client.get("/user/ai/tasks/list", params={"size": 10}).json()["data"]
    assert [t["modelName"] for t in tasks["records"]] == [
        "sc_soraimg_text_1x1",
        "sc_soraimg_text_1x1",
        "sc_soraimg_text_3x2",
    ]

    # Edits with two uploaded files: an image-to-image task with both as references.
    edited = client.images.edit(
        model="gpt-image-1",
        image=[("a.png", png((40, 60)), "image/png"), ("b.png", png((60, 40)), "image/png")],
        prompt="把它画成水彩",
        size="1024x1536",
    )
    assert len(edited.data) == 1 and edited.data[0].url
    image = picture(edited.data[0].url)
    assert image.height > image.width
    latest = user.client.get("/user/ai/tasks/list", params={"size": 1}).json()["data"]
    assert latest["records"][0]["modelName"] == "sc_soraimg_img2img_2x3"
    assert latest["records"][0]["imageUrl"].count("/files/") == 2
    assert user.balance() == 875

    # A failed picture: 502, its reason, the points back, and no retry by the SDK.
    with pytest.raises(openai.InternalServerError) as failed:
        client.images.generate(model="gpt-image-1", prompt="[sandbox:fail] 猫")
    assert failed.value.status_code == 502
    assert "内容安全" in failed.value.message and "积分已退还" in failed.value.message
    assert user.balance() == 875

    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="gpt-image-1", prompt="猫", n=5)
    assert bad.value.body["param"] == "n" and bad.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="gpt-image-1", prompt="猫", size="640x480")
    assert bad.value.body["param"] == "size"
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="sc_soraimg_img2img_1x1", prompt="猫")
    assert bad.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError) as missing:
        client.images.generate(model="dall-e-9", prompt="猫")
    assert missing.value.body["param"] == "model"
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        openai.OpenAI(base_url=audited.url + "/v1", api_key="sk-nope", max_retries=0).models.list()
    assert unauthorized.value.body["code"] == "invalid_api_key"
    assert user.balance() == 875

    poor = audited.new_user(points=40)
    poor_client = openai.OpenAI(base_url=audited.url + "/v1", api_key=api_key(poor), max_retries=0)
    with pytest.raises(openai.RateLimitError) as broke:
        poor_client.images.generate(model="gpt-image-1", prompt="猫", n=2)
    assert broke.value.body["code"] == "insufficient_quota"
    assert poor.balance() == 40
    assert poor.client.get("/user/ai/tasks/list").json()["data"]["total"] == 0


def test_the_async_openai_client_runs_requests_side_by_side(audited: Platform) -> None:
    user = audited.new_user(points=300)
    key = api_key(user)

    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=audited.url + "/v1", api_key=key, max_retries=0
        ) as client:
            made, edited = await asyncio.gather(
                client.images.generate(model="gpt-image-1", prompt="星空", n=2),
                client.images.edit(
                    model="sc_soraimg", image=("ref.png", png(), "image/png"), prompt="油画"
                ),
            )
            assert len(made.data) == 2 and all(d.url for d in made.data)
            assert len(edited.data) == 1 and edited.data[0].url
            with pytest.raises(openai.BadRequestError):
                await client.images.edit(model="gpt-image-1", image=[], prompt="油画")

    asyncio.run(main())
    assert user.balance() == 300 - 2 * 30 - 35


def test_a_wait_that_runs_out_names_the_tasks_and_a_retry_resumes_it(tmp_path: Path) -> None:
    """Waiting is capped; the answer then names the tasks. The same Idempotency-Key picks
    them up again (never a second charge), and refuses while its first request runs."""
    platform = Platform(tmp_path, SHENGTU_OPENAI_WAIT_SECONDS="1.5").start()
    try:
        user = platform.new_user(points=100)
        headers = {"Authorization": f"Bearer {api_key(user)}", "Idempotency-Key": "job-1"}
        body = {"model": "gpt-image-1", "prompt": "[sandbox:timeout] 雪山"}

        async def two_at_once() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=platform.url, timeout=30) as c:
                first = asyncio.create_task(
                    c.post("/v1/images/generations", json=body, headers=headers)
                )
                await asyncio.sleep(0.5)
                second = await c.post("/v1/images/generations", json=body, headers=headers)
                return [await first, second]

        first, second = asyncio.run(two_at_once())
        assert second.status_code == 409, second.text
        assert first.status_code == 504, first.text
        assert first.headers["x-should-retry"] == "false"
        error = first.json()["error"]
        assert error["code"] == "generation_pending" and len(error["task_nos"]) == 1
        task_no = error["task_nos"][0]
        assert task_no in error["message"]
        assert user.balance() == 70

        again = httpx.post(
            platform.url + "/v1/images/generations", json=body, headers=headers, timeout=30
        )
        assert again.status_code == 504 and again.json()["error"]["task_nos"] == [task_no]
        assert user.balance() == 70
        other = httpx.post(
            platform.url + "/v1/images/generations",
            json={**body, "n": 2},
            headers=headers,
            timeout=30,
        )
        assert other.status_code == 422, other.text

        # The task's deadline fails it; the same key then answers that, with the points back.
        user.wait(task_no)
        final = httpx.post(
            platform.url + "/v1/images/generations", json=body, headers=headers, timeout=30
        )
        assert final.status_code == 502, final.text
        assert user.balance() == 100
        assert user.client.get("/user/ai/tasks/list").json()["data"]["total"] == 1
        platform.audit()
    finally:
        platform.stop()


def _partial_edit(platform: Platform, key: str, extra_headers: str = "") -> tuple[int, Any]:
    """An edit of a declared 8 MiB picture of which only the first 4 KiB are ever sent:
    the answer, if one comes before the rest of the body (which never does)."""
    boundary = "shengtu-partial-upload"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-image-1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n水彩\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    declared = len(head) + 8 * 1024 * 1024 + len(tail)
    request = (
        "POST /v1/images/edits HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{platform.port}\r\n"
        f"Authorization: Bearer {key}\r\n{extra_headers}"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", platform.port), timeout=10) as sock:
        sock.sendall(request + head + b"\x89PNG" + b"\0" * 4092)
        answer = http.client.HTTPResponse(sock)
        try:
            answer.begin()
        except TimeoutError:
            raise AssertionError(
                "no answer within 10 s: the server waited for the upload"
            ) from None
        return answer.status, json.loads(answer.read())


def test_an_edit_a_balance_cannot_pay_is_refused_before_its_upload_is_read(
    audited: Platform,
) -> None:
    """A 0-point account's edit is answered insufficient_quota at once, with or without an
    Idempotency-Key: its multipart body is never waited for, parsed or hashed."""
    poor = audited.new_user(points=0)
    key = api_key(poor)
    shared = f"shared-{uuid.uuid4()}"
    for headers in ("", f"Idempotency-Key: {uuid.uuid4()}\r\n"):
        status, body = _partial_edit(audited, key, headers)
        assert status == 429, body
        assert body["error"]["code"] == "insufficient_quota", body
        assert "积分不足" in body["error"]["message"]
    # A key is per user: another user's stored key does not let this one through.
    rich = audited.new_user(points=100)
    stored = httpx.post(
        audited.url + "/v1/images/edits",
        headers={"Authorization": f"Bearer {api_key(rich)}", "Idempotency-Key": shared},
        data={"model": "gpt-image-1", "prompt": "水彩"},
        files=[("image", ("a.png", png(), "image/png"))],
        timeout=30,
    )
    assert stored.status_code == 200, stored.text
    status, body = _partial_edit(audited, key, f"Idempotency-Key: {shared}\r\n")
    assert status == 429 and body["error"]["code"] == "insufficient_quota", body
    assert poor.balance() == 0
    assert poor.client.get("/user/ai/tasks/list").json()["data"]["total"] == 0


class CountingHashlib:
    """Stands in for ``hashlib`` in ``shengtu.idempotency.service``: every byte its
    SHA-256s are fed, and on which thread."""

    def __init__(self) -> None:
        self.fed: list[tuple[int, int]] = []

    def sha256(self, data: bytes = b"") -> Any:
        real, fed = hashlib.sha256(), self.fed

        class Counted:
            def update(self, more: bytes) -> None:
                fed.append((len(more), threading.get_ident()))
                real.update(more)

            def hexdigest(self) -> str:
                return real.hexdigest()

        counted = Counted()
        if data:
            counted.update(data)
        return counted

    def __getattr__(self, name: str) -> Any:
        return getattr(hashlib, name)

    def bytes_fed(self) -> int:
        return sum(n for n, _ in self.fed)


def test_an_edit_hashes_its_files_only_for_a_key_and_off_the_event_loop(
    audited: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, on the platform's database: the files of an edit are hashed only when
    it has an Idempotency-Key, a large one on another thread than the event loop's, and
    never for a balance that cannot pay for the ``n`` pictures asked."""
    from shengtu.app import create_app
    from shengtu.assembly import build_context
    from shengtu.idempotency import service as idempotency_service

    user = audited.new_user(points=35)
    key = api_key(user)
    counter = CountingHashlib()
    monkeypatch.setattr(idempotency_service, "hashlib", counter)
    # Not a picture: the upload is refused (400) after the key's checks, before any charge.
    blob = b"\x89PNG not really" + b"\x07" * (2 * 1024 * 1024)

    # n, Idempotency-Key: without one; two pictures unpaid, without and with one; with one.
    cases = [(1, None), (2, None), (2, str(uuid.uuid4())), (1, str(uuid.uuid4()))]

    async def go() -> tuple[int, list[tuple[int, dict[str, Any], int, set[int]]]]:
        ctx = build_context(audited.settings(), role="api")
        await ctx.start()
        answers = []
        try:
            transport = httpx.ASGITransport(app=create_app(ctx, with_worker=False))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                for n, idempotency_key in cases:
                    headers = {"Authorization": f"Bearer {key}"}
                    if idempotency_key:
                        headers["Idempotency-Key"] = idempotency_key
                    counter.fed.clear()
                    r = await c.post(
                        "/v1/images/edits",
                        headers=headers,
                        data={"model": "gpt-image-1", "prompt": "水彩", "n": str(n)},
                        files=[("image", ("a.png", blob, "image/png"))],
                    )
                    big = {t for size, t in counter.fed if size >= 64 * 1024}
                    answers.append((r.status_code, r.json(), counter.bytes_fed(), big))
        finally:
            await ctx.aclose()
        return threading.get_ident(), answers

    loop_thread, (no_key, poor, poor_key, keyed) = asyncio.run(go())
    # No key: the upload is refused as not a picture, and nothing was hashed.
    assert no_key[0] == 400 and "不是有效图片" in no_key[1]["error"]["message"], no_key
    assert no_key[2] < len(blob)
    # Two pictures cost 70 of the 35 points: refused before the files are read.
    for status, body, fed, _ in (poor, poor_key):
        assert status == 429 and body["error"]["code"] == "insufficient_quota", body
        assert fed < len(blob)
    # With a key the files are hashed (the counter sees them), off the event loop.
    assert keyed[0] == 400, keyed
    assert keyed[2] >= len(blob) and keyed[3]
    assert loop_thread not in keyed[3], "hashed on the event loop"
    assert user.balance() == 35


def test_an_edit_under_its_key_replays_at_a_balance_of_zero_and_across_the_print_change(
    audited: Platform,
) -> None:
    """A key whose edit charged the last points replays it (the early balance refusal does
    not preempt it); other files under it are 422. A key stored before the files were
    hashed streamed (``fingerprint("file", data.hex())``) still replays."""
    from sqlalchemy import update

    from shengtu.assembly import build_context
    from shengtu.idempotency.service import fingerprint
    from shengtu.models.idempotency import IdempotencyKey
    from shengtu.openai_compat.router import ImageGenerationRequest

    user = audited.new_user(points=35)
    first_key, second_key = f"edit-{uuid.uuid4()}", f"edit-{uuid.uuid4()}"
    fields = {"model": "gpt-image-1", "prompt": "把它画成水彩"}
    first_file, other_file = png((40, 40)), png((41, 40))

    def edit(idempotency_key: str, picture: bytes) -> httpx.Response:
        return httpx.post(
            audited.url + "/v1/images/edits",
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key},
            data=fields,
            files=[("image", ("a.png", picture, "image/png"))],
            timeout=30,
        )

    key = api_key(user)
    first = edit(first_key, first_file)
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers, first.text
    assert user.balance() == 0
    again = edit(first_key, first_file)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = edit(first_key, other_file)
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    fresh = edit(second_key, first_file)
    assert fresh.status_code == 429 and fresh.json()["error"]["code"] == "insufficient_quota"

    # As the key would have been stored before this deploy.
    params = ImageGenerationRequest.model_validate(fields).model_dump()
    legacy = fingerprint("v1/images", {**params, "image": [fingerprint("file", first_file.hex())]})

    async def store_legacy_print() -> None:
        ctx = build_context(audited.settings(), role="api")
        await ctx.start()
        try:
            async with ctx.db.write() as session:
                changed = await session.execute(
                    update(IdempotencyKey)
                    .where(IdempotencyKey.key == first_key)
                    .values(fingerprint=legacy)
                )
                assert getattr(changed, "rowcount", 0) == 1
        finally:
            await ctx.aclose()

    asyncio.run(store_legacy_print())
    replay = edit(first_key, first_file)
    assert replay.status_code == 200, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert edit(first_key, other_file).status_code == 422
    assert user.balance() == 0
    assert user.client.get("/user/ai/tasks/list").json()["data"]["total"] == 1
