"""Each moderation protocol against its double, over real HTTP: the Aliyun signature as
documented, a verdict on a text and on a picture, the markers that flag or break a
check, and a wrong key (or a wrong signature) refused by the double and read by the
client as no verdict, with the key nowhere in what it says."""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from shengtu.moderation.aliyun import AliyunModerator, percent_encode, sign_rpc, string_to_sign
from shengtu.moderation.base import ModerationUnavailable, Moderator, Verdict
from shengtu.moderation.openai import OpenAIModerator
from shengtu.moderation.sandbox.aliyun import TEXT_LABEL, AliyunGreenDouble
from shengtu.moderation.sandbox.common import (
    IMAGE_500,
    IMAGE_FLAG,
    IMAGE_SLOW,
    TEXT_500,
    TEXT_FLAG,
    TEXT_SLOW,
    ModerationDouble,
)
from shengtu.moderation.sandbox.openai import OpenAIModerationDouble
from tests.moderation.harness import ServedDouble, served
from tests.support import serve_http

# Aliyun's worked example of the RPC signature (ECS DescribeRegions, secret "testsecret").
DOC_PARAMS = {
    "Timestamp": "2016-02-23T12:46:24Z",
    "Format": "XML",
    "AccessKeyId": "testid",
    "Action": "DescribeRegions",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "Version": "2014-05-26",
    "SignatureVersion": "1.0",
}


def test_the_aliyun_signature_is_the_documented_one() -> None:
    assert string_to_sign("GET", DOC_PARAMS) == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML"
        "%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"
        "%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z"
        "%26Version%3D2014-05-26"
    )
    assert sign_rpc("GET", DOC_PARAMS, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    # The verb is signed too: the POST the client sends signs differently.
    assert sign_rpc("POST", DOC_PARAMS, "testsecret") != sign_rpc("GET", DOC_PARAMS, "testsecret")
    assert percent_encode("a b*c~d/é") == "a%20b%2Ac~d%2F%C3%A9"


def picture(says: str) -> bytes:
    """A PNG carrying ``says`` in a text chunk, as the sandbox upstream writes its prompt."""
    meta = PngInfo()
    meta.add_itxt("prompt", says)
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 120, 200)).save(out, "PNG", pnginfo=meta)
    return out.getvalue()


@pytest.fixture(scope="module")
def pictures() -> Iterator[str]:
    """A server of the test pictures (the Aliyun double fetches a picture by its URL):
    ``/<marker>.png`` carries that marker."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = picture(self.path.strip("/").removesuffix(".png").replace("_", ":"))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = serve_http(Handler)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _openai(server: ServedDouble, key: str | None = None) -> Moderator:
    double = server.double
    assert isinstance(double, OpenAIModerationDouble)
    return OpenAIModerator(server.base_url, key or double.key, timeout=1.0)


def _aliyun(server: ServedDouble, key: str | None = None, secret: str | None = None) -> Moderator:
    double = server.double
    assert isinstance(double, AliyunGreenDouble)
    return AliyunModerator(
        server.base_url,
        key or double.access_key_id,
        secret or double.access_key_secret,
        timeout=1.0,
    )


CASES: dict[str, tuple[Callable[[], ModerationDouble], Callable[..., Moderator]]] = {
    "openai": (lambda: OpenAIModerationDouble(slow_seconds=2), _openai),
    "aliyun": (lambda: AliyunGreenDouble(slow_seconds=2), _aliyun),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def double(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[ServedDouble, Callable[..., Moderator]]]:
    make, client = CASES[request.param]
    with served(make()) as server:
        yield server, client


def _url(base: str, marker: str) -> str:
    return f"{base}/{marker.replace(':', '_')}.png"


def test_verdicts_on_texts_and_pictures(
    double: tuple[ServedDouble, Callable[..., Moderator]], pictures: str
) -> None:
    server, client = double

    async def run() -> list[Verdict]:
        moderator = client(server)
        try:
            return [
                await moderator.check_text("一只在草地上奔跑的小狗"),
                await moderator.check_text(f"海报 {TEXT_FLAG}"),
                # A picture marker in a text is no text marker.
                await moderator.check_text(f"海报 {IMAGE_FLAG}"),
                await moderator.check_image(picture("风景"), _url(pictures, "风景")),
                await moderator.check_image(picture(IMAGE_FLAG), _url(pictures, IMAGE_FLAG)),
            ]
        finally:
            await moderator.aclose()

    plain, flagged, other, clean, bad = asyncio.run(run())
    assert not plain.flagged and not other.flagged and not clean.flagged
    assert flagged.flagged and flagged.labels
    assert bad.flagged and bad.labels
    seen = [s.outcome for s in server.double.seen[-5:]]
    assert seen == ["pass", "flag", "pass", "pass", "flag"]


def test_a_broken_or_slow_service_gives_no_verdict(
    double: tuple[ServedDouble, Callable[..., Moderator]], pictures: str
) -> None:
    server, client = double

    async def run() -> list[str]:
        moderator = client(server)
        said = []
        calls = [
            moderator.check_text(f"x {TEXT_500}"),
            moderator.check_text(f"x {TEXT_SLOW}"),
            moderator.check_image(picture(IMAGE_500), _url(pictures, IMAGE_500)),
            moderator.check_image(picture(IMAGE_SLOW), _url(pictures, IMAGE_SLOW)),
        ]
        try:
            for call in calls:
                with pytest.raises(ModerationUnavailable) as caught:
                    await call
                assert not caught.value.key_rejected
                said.append(caught.value.message)
        finally:
            await moderator.aclose()
        return said

    broken, slow, broken_picture, slow_picture = asyncio.run(run())
    assert "HTTP 500" in broken and "HTTP 500" in broken_picture
    assert "超时" in slow and "超时" in slow_picture


def test_a_wrong_key_is_refused(
    double: tuple[ServedDouble, Callable[..., Moderator]],
) -> None:
    server, client = double
    wrong = "wrong-" + secrets.token_hex(8)
    refused_before = server.double.refused_keys

    async def run(moderator: Moderator) -> ModerationUnavailable:
        try:
            with pytest.raises(ModerationUnavailable) as caught:
                await moderator.check_text("一只猫")
            return caught.value
        finally:
            await moderator.aclose()

    wrongs = [client(server, key=wrong)]
    if isinstance(server.double, AliyunGreenDouble):
        # The right AccessKey ID, signed with another secret.
        wrongs.append(client(server, secret=wrong))
    for moderator in wrongs:
        refusal = asyncio.run(run(moderator))
        assert refusal.key_rejected, refusal.message
        assert wrong not in refusal.message
    assert server.double.refused_keys == refused_before + len(wrongs)


def test_the_aliyun_double_refuses_a_replayed_or_stale_call() -> None:
    double = AliyunGreenDouble()
    with served(double) as server:
        moderator = AliyunModerator(server.base_url, double.access_key_id, double.access_key_secret)
        form = moderator.signed("TextModerationPlus", "llm_query_moderation", {"content": "猫"})
        first = httpx.post(server.base_url + "/", data=form)
        again = httpx.post(server.base_url + "/", data=form)
        stale = {**form, "Timestamp": "2016-02-23T12:46:24Z", "SignatureNonce": "n-1"}
        stale["Signature"] = sign_rpc(
            "POST", {k: v for k, v in stale.items() if k != "Signature"}, double.access_key_secret
        )
        old = httpx.post(server.base_url + "/", data=stale)
        asyncio.run(moderator.aclose())
    assert first.status_code == 200 and first.json()["Code"] == 200
    assert first.json()["Data"]["RiskLevel"] == "none"
    assert again.status_code == 400 and again.json()["Code"] == "SignatureNonceUsed"
    assert old.status_code == 400 and old.json()["Code"] == "InvalidTimeStamp.Expired"


def test_aliyuns_older_text_moderation_reads_the_same() -> None:
    double = AliyunGreenDouble()
    with served(double) as server:

        async def run() -> list[Verdict]:
            moderator = AliyunModerator(
                server.base_url,
                double.access_key_id,
                double.access_key_secret,
                text_action="TextModeration",
                text_service="chat_detection",
            )
            try:
                return [
                    await moderator.check_text("一杯咖啡"),
                    await moderator.check_text(f"一杯咖啡 {TEXT_FLAG}"),
                ]
            finally:
                await moderator.aclose()

        plain, flagged = asyncio.run(run())
    assert not plain.flagged and plain.labels == ()
    assert flagged.flagged and flagged.labels == (TEXT_LABEL,)
