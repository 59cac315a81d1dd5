"""The sandbox upstream: an HTTP server that speaks the 速创 protocol and draws real PNGs.

A job's id carries its start time, aspect ratio and directive, so the sandbox needs no
state to answer a poll: a task submitted before a restart still completes after it.
Prompt directives make it misbehave on purpose:

- ``[sandbox:fail]``      the job ends with status 3 and a Chinese message
- ``[sandbox:error500]``  submit answers HTTP 500
- ``[sandbox:timeout]``   the job never finishes
- ``[sandbox:badimage]``  the result URL serves something that is not an image

and, for the reliability suite, every other way an upstream can go wrong:

- ``[sandbox:submit429]``  the first submit answers 429 with Retry-After: 1, the next is accepted
- ``[sandbox:slowsubmit]`` / ``[sandbox:slowpoll]``  answer after SLOW_SECONDS (a client timeout)
- ``[sandbox:garbage]``  polls answer with malformed JSON
- ``[sandbox:status7]``  polls answer with a status value the protocol does not have
- ``[sandbox:poll429]``  polls answer 429 with Retry-After: 1
- ``[sandbox:result404]``  the result URL answers 404
- ``[sandbox:redirectprivate]``  the result URL redirects to 169.254.169.254
- ``[sandbox:html]``  the result URL serves an HTML page with status 200
- ``[sandbox:huge]``  the result URL streams 200 MB
- ``[sandbox:truncated]``  the result is a PNG cut in half
- ``[sandbox:drip]``  the result URL sends its PNG one byte every DRIP_SECONDS
- ``[sandbox:trickle]``  the result URL sends its PNG, then zeros, at TRICKLE_BYTES a second,
  without end: above a modest rate floor, and never done

It speaks the OpenAI Images API too (``/v1/images/generations``, ``/v1/images/edits``,
``/v1/models``, a ``Bearer`` key), answering when the picture is done (after the latency)
with ``b64_json``, or a ``url`` when asked, and obeying the same directives: ``fail`` is a
400 ``content_policy_violation``; ``slowsubmit`` and ``timeout`` make the job (counted)
and answer late (3 s, 9 s); ``garbage`` is a 200 with broken JSON; ``badimage`` and
``truncated`` spoil the inline picture; the URL directives spoil the ``url``.

And Replicate's predictions (``/v1/models/{owner}/{name}/predictions``,
``/v1/predictions/{id}``, its ``cancel``, ``/v1/account``), with the same directives:
``fail`` ends the prediction ``failed`` with an NSFW error, ``garbage``, ``status7``,
``poll429`` and ``slowpoll`` spoil polls, ``slowsubmit`` answers a made prediction late.
"""

from __future__ import annotations

import base64
import colorsys
import hashlib
import io
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

SIZES = {"auto": (1024, 1024), "1:1": (1024, 1024), "2:3": (1024, 1536), "3:2": (1536, 1024)}
_SIZE_CODE = {"auto": "a", "1:1": "s", "2:3": "p", "3:2": "l"}
_CODE_SIZE = {v: k for k, v in _SIZE_CODE.items()}
DIRECTIVES = {
    "fail": "f",
    "timeout": "t",
    "badimage": "b",
    "error500": "e",
    "submit429": "n",  # accepted on the second try, then a normal job
    "slowsubmit": "n",
    "slowpoll": "s",
    "garbage": "g",
    "status7": "u",
    "poll429": "q",
    "result404": "4",
    "redirectprivate": "r",
    "html": "h",
    "huge": "z",
    "truncated": "x",
    "drip": "d",
    "trickle": "w",
}
_CODE_DIRECTIVE = {code: name for name, code in DIRECTIVES.items() if code != "n"}
SLOW_SECONDS = 3.0
HUGE_BYTES = 200 * 1024 * 1024
DRIP_SECONDS = 1.0
TRICKLE_BYTES = 1024
K = TypeVar("K")
V = TypeVar("V")
_DIRECTIVE_RE = re.compile(r"\[sandbox:([a-z0-9]+)\]")
_ID_RE = re.compile(r"^image_[0-9a-f]{12}-([0-9a-f]{1,14})-([aslp])([a-z0-9])$")
_FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)
FAIL_MESSAGE = "图片生成失败:提示词触发了内容安全策略(沙箱模拟)"


def parse_directive(prompt: str) -> str:
    for name in _DIRECTIVE_RE.findall(prompt):
        name = str(name)
        if name in DIRECTIVES:
            return name
    return ""


def new_job_id(size: str, directive: str, now_ms: int) -> str:
    code = DIRECTIVES.get(directive, "n")
    return f"image_{secrets.token_hex(6)}-{now_ms:x}-{_SIZE_CODE[size]}{code}"


def parse_job_id(job_id: str) -> tuple[int, str, str] | None:
    """(start ms, size, directive) of a job id this sandbox made."""
    m = _ID_RE.match(job_id)
    if not m:
        return None
    directive = _CODE_DIRECTIVE.get(m.group(3), "")
    return int(m.group(1), 16), _CODE_SIZE[m.group(2)], directive


def _font(path_hint: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in (path_hint, *_FONT_CANDIDATES):
        if candidate and Path(candidate).is_file():
            try:
                return ImageFont.truetype(candidate, size)
            except OSError:
                continue
    return ImageFont.load_default(size)


def _renders(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> bool:
    """False when the font would draw the missing-glyph box for a character of ``text``."""
    missing = bytes(font.getmask("\U0010fffd"))
    return all(bytes(font.getmask(ch)) != missing for ch in set(text) if not ch.isascii())


def draw_png(prompt: str, size: str, job_id: str, font_path: str = "", scale: float = 1.0) -> bytes:
    """A gradient in the prompt's colours with the prompt written on it, of the asked ratio
    (``scale`` × the size; smaller pictures cost the test suite less CPU)."""
    width, height = (max(16, round(side * scale)) for side in SIZES[size])
    digest = hashlib.sha256(prompt.encode()).digest()
    hue = digest[0] / 255
    top = tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.55, 0.95))
    bottom = tuple(int(c * 255) for c in colorsys.hsv_to_rgb((hue + 0.3) % 1, 0.7, 0.45))
    mask = Image.linear_gradient("L").resize((width, height))
    img = Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), mask
    )
    draw = ImageDraw.Draw(img)
    font = _font(font_path, max(8, round(44 * scale)))
    small = _font(font_path, max(8, round(26 * scale)))
    text = _DIRECTIVE_RE.sub("", prompt).strip() or "(empty prompt)"
    if not _renders(font, text):
        # No CJK font here: say so instead of drawing boxes. The PNG's "prompt" text
        # chunk still carries the prompt; SHENGTU_SANDBOX_FONT names a font to use.
        text = f"prompt: {len(text)} characters (no CJK font; see PNG text 'prompt')"
    per_line = max(8, (width - 160) // 46)
    lines = [text[i : i + per_line] for i in range(0, min(len(text), per_line * 12), per_line)]
    y = height // 2 - len(lines) * 30
    for line in lines:
        draw.text((80, y), line, fill=(255, 255, 255), font=font)
        y += 60
    draw.text(
        (80, 60), f"Shengtu sandbox · {size} · {width}×{height}", fill=(255, 255, 255), font=small
    )
    draw.text((80, height - 90), job_id, fill=(235, 235, 235), font=small)
    meta = PngInfo()
    meta.add_itxt("prompt", prompt)
    meta.add_text("job", job_id)
    out = io.BytesIO()
    img.save(out, format="PNG", pnginfo=meta, compress_level=1)
    return out.getvalue()


class SandboxState:
    def __init__(
        self, api_key: str, latency: float, font_path: str = "", scale: float = 1.0
    ) -> None:
        # One key, or several separated by commas (a channel with several keys).
        self.api_keys = tuple(k for k in api_key.split(",") if k)
        self.latency = latency
        self.font_path = font_path
        self.scale = scale
        self.prompts: OrderedDict[str, str] = OrderedDict()
        self.images: OrderedDict[str, bytes] = OrderedDict()
        # How many times each prompt was accepted: lets tests see a task run twice.
        self.accepted: OrderedDict[str, int] = OrderedDict()
        self.throttled: OrderedDict[str, bool] = OrderedDict()
        self.submits = 0
        self.polls = 0
        # Seen from outside the worker, for the benchmark: when each job was last polled,
        # the gaps between successive polls, and when each job was first answered "done".
        self.last_polled: OrderedDict[str, float] = OrderedDict()
        self.poll_gaps: list[float] = []
        self.first_done: OrderedDict[str, float] = OrderedDict()
        # API calls (submits and polls, answered or not) by the wall-clock second they
        # arrived in: an upstream's rate limit counts these.
        self.calls_per_second: OrderedDict[int, int] = OrderedDict()
        # prompt → the sizes of the reference files an OpenAI edit carried.
        self.references: OrderedDict[str, list[int]] = OrderedDict()
        # Replicate predictions a caller canceled.
        self.canceled: set[str] = set()

    def count_call(self) -> None:
        second = int(time.time())
        self.remember(self.calls_per_second, second, self.calls_per_second.get(second, 0) + 1, 3600)

    def accept(self, prompt: str, size: str, directive: str) -> str:
        """A job made, in any protocol: its id, counted per prompt."""
        self.submits += 1
        job_id = new_job_id(size, directive, int(time.time() * 1000))
        self.remember(self.prompts, job_id, prompt, 50_000)
        self.remember(self.accepted, prompt, self.accepted.get(prompt, 0) + 1, 50_000)
        return job_id

    def throttle_once(self, prompt: str) -> bool:
        """True the first time a prompt asks for a 429 (``submit429``), then False."""
        if prompt in self.throttled:
            return False
        self.remember(self.throttled, prompt, True, 50_000)
        return True

    def accepts(self, key: str) -> bool:
        # Every key compared, so the time taken tells nothing of which one matched.
        matches = [secrets.compare_digest(key.encode(), k.encode()) for k in self.api_keys]
        return any(matches)

    def record_poll(self, job_id: str, now: float) -> None:
        previous = self.last_polled.get(job_id)
        if previous is not None and len(self.poll_gaps) < 1_000_000:
            self.poll_gaps.append(now - previous)
        self.remember(self.last_polled, job_id, now, 100_000)

    def remember(self, cache: OrderedDict[K, V], key: K, value: V, limit: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)


def _reply(
    code: int, msg: str, data: Any, status: int = 200, retry_after: int | None = None
) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(
        {"code": code, "msg": msg, "data": data, "exec_time": 0.01},
        status_code=status,
        headers=headers,
    )


def _is_picture(data: bytes) -> bool:
    return (
        data[:8] == b"\x89PNG\r\n\x1a\n"
        or data[:3] == b"\xff\xd8\xff"
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
    )


def _replicate_error(status: int, detail: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(
        {"title": detail, "detail": detail, "status": status}, status_code=status, headers=headers
    )


# OpenAI's sizes → the sandbox's ratios.
OPENAI_SIZES = {"auto": "auto", "1024x1024": "1:1", "1024x1536": "2:3", "1536x1024": "3:2"}


def _openai_error(
    status: int, code: str, message: str, retry_after: int | None = None
) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        },
        status_code=status,
        headers=headers,
    )


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"count": len(ordered), "p50": at(0.5), "p99": at(0.99), "max": ordered[-1]}


async def _zeros(total: int) -> AsyncIterator[bytes]:
    chunk = bytes(1024 * 1024)
    for _ in range(total // len(chunk)):
        yield chunk


async def _drip(data: bytes) -> AsyncIterator[bytes]:
    for index in range(len(data)):
        yield data[index : index + 1]
        await anyio.sleep(DRIP_SECONDS)


async def _trickle(data: bytes) -> AsyncIterator[bytes]:
    piece = TRICKLE_BYTES // 4
    padded = data + bytes(-len(data) % piece)
    for start in range(0, len(padded), piece):
        yield padded[start : start + piece]
        await anyio.sleep(0.25)
    while True:
        yield bytes(piece)
        await anyio.sleep(0.25)


def create_sandbox_app(state: SandboxState) -> Starlette:
    def authorised(request: Request) -> bool:
        key = request.headers.get("authorization") or request.query_params.get("key") or ""
        return state.accepts(key)

    def bearer(request: Request) -> bool:
        return state.accepts(request.headers.get("authorization", "").removeprefix("Bearer "))

    async def openai_image(request: Request, prompt: str, fields: dict[str, Any]) -> Response:
        """What an OpenAI images endpoint answers once the request is read: the picture
        after the sandbox's latency, inline or as a URL, or the fault a directive asks for."""
        size = OPENAI_SIZES.get(str(fields.get("size") or "auto"))
        if size is None:
            return _openai_error(400, "invalid_value", f"Invalid size: {fields.get('size')}")
        directive = parse_directive(prompt)
        if directive == "error500":
            return _openai_error(500, "server_error", "The server had an error (sandbox)")
        if directive == "submit429" and state.throttle_once(prompt):
            return _openai_error(429, "rate_limit_exceeded", "Rate limit reached", retry_after=1)
        if directive == "fail":
            return _openai_error(400, "content_policy_violation", FAIL_MESSAGE)
        job_id = state.accept(prompt, size, directive)
        # The job is made (and paid for) from here on: a lost answer is the caller's doubt.
        if directive == "slowsubmit":
            await anyio.sleep(SLOW_SECONDS)
        elif directive == "timeout":
            await anyio.sleep(SLOW_SECONDS * 3)  # long past any sane client timeout in tests
        await anyio.sleep(state.latency)
        if directive == "garbage":
            return Response('{"created": 1, "data": [', media_type="application/json")
        if fields.get("response_format") == "url":
            base = str(request.base_url).rstrip("/")
            item: dict[str, Any] = {"url": f"{base}/results/{job_id}.png"}
        else:
            if directive == "badimage":
                picture = b"<html><body>this is not an image</body></html>"
            else:
                picture = await anyio.to_thread.run_sync(
                    draw_png, prompt, size, job_id, state.font_path, state.scale
                )
                if directive == "truncated":
                    picture = picture[: len(picture) // 2]
            item = {"b64_json": base64.b64encode(picture).decode()}
        return JSONResponse({"created": int(time.time()), "data": [item]})

    async def generations(request: Request) -> Response:
        state.count_call()
        if not bearer(request):
            return _openai_error(401, "invalid_api_key", "Incorrect API key provided")
        try:
            body = await request.json()
        except ValueError:
            return _openai_error(400, "invalid_json", "We could not parse the JSON body")
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return _openai_error(400, "missing_required_parameter", "prompt is required")
        return await openai_image(request, body["prompt"], body)

    async def edits(request: Request) -> Response:
        state.count_call()
        if not bearer(request):
            return _openai_error(401, "invalid_api_key", "Incorrect API key provided")
        form = await request.form(max_files=16, max_fields=32, max_part_size=64 * 1024 * 1024)
        prompt = form.get("prompt")
        if not isinstance(prompt, str):
            return _openai_error(400, "missing_required_parameter", "prompt is required")
        files = [f for name in ("image", "image[]") for f in form.getlist(name)]
        pictures = [await f.read() for f in files if not isinstance(f, str)]
        if not pictures or not all(_is_picture(p) for p in pictures):
            return _openai_error(400, "invalid_image", "image must be PNG, JPEG or WEBP files")
        state.remember(state.references, prompt, [len(p) for p in pictures], 50_000)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        return await openai_image(request, prompt, fields)

    def prediction(request: Request, job_id: str) -> dict[str, Any]:
        """A Replicate prediction's state, from its id alone (and whether it was canceled)."""
        parsed = parse_job_id(job_id)
        assert parsed is not None
        started_ms, _size, directive = parsed
        base = str(request.base_url).rstrip("/")
        body: dict[str, Any] = {
            "id": job_id,
            "status": "starting",
            "output": None,
            "error": None,
            "urls": {
                "get": f"{base}/v1/predictions/{job_id}",
                "cancel": f"{base}/v1/predictions/{job_id}/cancel",
            },
        }
        elapsed = time.time() - started_ms / 1000
        if job_id in state.canceled:
            body["status"] = "canceled"
        elif elapsed < state.latency * 0.1:
            pass
        elif directive == "timeout" or elapsed < state.latency:
            body["status"] = "processing"
        elif directive == "fail":
            body.update(status="failed", error="NSFW content detected (sandbox)")
        else:
            body.update(status="succeeded", output=[f"{base}/results/{job_id}.png"])
        return body

    async def create_prediction(request: Request) -> Response:
        state.count_call()
        if not bearer(request):
            return _replicate_error(401, "Unauthenticated")
        try:
            body = await request.json()
        except ValueError:
            return _replicate_error(400, "Invalid JSON")
        model_input = body.get("input") if isinstance(body, dict) else None
        if not isinstance(model_input, dict) or not isinstance(model_input.get("prompt"), str):
            return _replicate_error(422, "input.prompt is required")
        prompt = model_input["prompt"]
        size = str(model_input.get("aspect_ratio") or "1:1")
        if size not in SIZES:
            return _replicate_error(422, f"input.aspect_ratio: invalid value {size}")
        images = [v for k, v in model_input.items() if "image" in k and isinstance(v, str)]
        if images:
            state.remember(state.references, prompt, [len(v) for v in images], 50_000)
        directive = parse_directive(prompt)
        if directive == "error500":
            return _replicate_error(500, "Internal server error (sandbox)")
        if directive == "submit429" and state.throttle_once(prompt):
            return _replicate_error(429, "Request was throttled", retry_after=1)
        job_id = state.accept(prompt, size, directive)
        if directive == "slowsubmit":
            await anyio.sleep(SLOW_SECONDS)
        return JSONResponse(prediction(request, job_id), status_code=201)

    async def get_prediction(request: Request) -> Response:
        state.count_call()
        if not bearer(request):
            return _replicate_error(401, "Unauthenticated")
        job_id = request.path_params["job_id"]
        parsed = parse_job_id(job_id)
        if parsed is None:
            return _replicate_error(404, "Prediction not found")
        state.polls += 1
        state.record_poll(job_id, time.time())
        directive = parsed[2]
        if directive == "slowpoll":
            await anyio.sleep(SLOW_SECONDS)
        elif directive == "garbage":
            return Response('{"id": "x", "status": ', media_type="application/json")
        elif directive == "status7":
            return JSONResponse({"id": job_id, "status": "thinking", "output": None})
        elif directive == "poll429":
            return _replicate_error(429, "Request was throttled", retry_after=1)
        return JSONResponse(prediction(request, job_id))

    async def cancel_prediction(request: Request) -> Response:
        state.count_call()
        if not bearer(request):
            return _replicate_error(401, "Unauthenticated")
        job_id = request.path_params["job_id"]
        if parse_job_id(job_id) is None:
            return _replicate_error(404, "Prediction not found")
        if prediction(request, job_id)["status"] in ("starting", "processing"):
            state.canceled.add(job_id)
        return JSONResponse(prediction(request, job_id))

    async def replicate_account(request: Request) -> Response:
        state.count_call()
        if not bearer(request):
            return _replicate_error(401, "Unauthenticated")
        return JSONResponse({"type": "user", "username": "sandbox"})

    async def openai_models(request: Request) -> Response:
        state.count_call()
        if not bearer(request):
            return _openai_error(401, "invalid_api_key", "Incorrect API key provided")
        return JSONResponse({"object": "list", "data": [{"id": "gpt-image-1", "object": "model"}]})

    async def submit(request: Request) -> Response:
        state.count_call()
        if not authorised(request):
            return _reply(401, "密钥无效", [], status=401)
        try:
            body = await request.json()
        except ValueError:
            return _reply(400, "请求体不是合法的 JSON", [])
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return _reply(400, "缺少 prompt 参数", [])
        prompt = body["prompt"]
        size = body.get("size", "auto")
        if size not in SIZES:
            return _reply(400, f"size 参数错误: {size}", [])
        urls = body.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            return _reply(400, "urls 参数必须是字符串数组", [])
        directive = parse_directive(prompt)
        if directive == "error500":
            return Response("Internal Server Error (sandbox)", status_code=500)
        if directive == "submit429" and state.throttle_once(prompt):
            return _reply(429, "请求过于频繁", [], status=429, retry_after=1)
        if directive == "slowsubmit":
            await anyio.sleep(SLOW_SECONDS)
        job_id = state.accept(prompt, size, directive)
        return _reply(200, "成功", {"id": job_id, "count": 1})

    async def detail(request: Request) -> Response:
        state.count_call()
        if not authorised(request):
            return _reply(401, "密钥无效", [], status=401)
        state.polls += 1
        job_id = request.query_params.get("id", "")
        parsed = parse_job_id(job_id)
        if parsed is None:
            return _reply(400, "任务不存在", [])
        started_ms, _size, directive = parsed
        polled_at = time.time()
        state.record_poll(job_id, polled_at)
        if directive == "slowpoll":
            await anyio.sleep(SLOW_SECONDS)
        elif directive == "garbage":
            return Response(
                '{"code": 200, "data": {"status": 2, "result": [', media_type="application/json"
            )
        elif directive == "status7":
            return _reply(200, "成功", {"id": job_id, "status": 7, "result": []})
        elif directive == "poll429":
            return _reply(429, "请求过于频繁", [], status=429, retry_after=1)
        elapsed = time.time() - started_ms / 1000
        data: dict[str, Any] = {"id": job_id, "result": [], "message": None, "fail_reason": None}
        if elapsed < state.latency * 0.1:
            data.update(status=0, progress=0)
        elif directive == "timeout" or elapsed < state.latency:
            fraction = elapsed / state.latency if state.latency else 1.0
            data.update(status=1, progress=min(99, int(100 * (1 - math.exp(-3 * fraction)))))
        elif directive == "fail":
            data.update(status=3, message=FAIL_MESSAGE, fail_reason=FAIL_MESSAGE)
        else:
            base = str(request.base_url).rstrip("/")
            data.update(status=2, progress=100, result=[f"{base}/results/{job_id}.png"])
            if job_id not in state.first_done:
                state.remember(state.first_done, job_id, polled_at, 100_000)
        return _reply(200, "成功", data)

    async def result(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        parsed = parse_job_id(job_id)
        if parsed is None:
            return Response("not found", status_code=404)
        _, size, directive = parsed
        if directive == "badimage":
            return Response(
                b"<html><body>this is not an image</body></html>", media_type="image/png"
            )
        if directive == "result404":
            return Response("expired", status_code=404)
        if directive == "redirectprivate":
            return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)
        if directive == "html":
            return Response("<!doctype html><title>登录</title>", media_type="text/html")
        if directive == "huge":
            return StreamingResponse(_zeros(HUGE_BYTES), media_type="image/png")
        png = state.images.get(job_id)
        if png is None:
            prompt = state.prompts.get(job_id, "(沙箱重启后提示词已不在内存中)")
            png = await anyio.to_thread.run_sync(
                draw_png, prompt, size, job_id, state.font_path, state.scale
            )
            state.remember(state.images, job_id, png, 64)
        if directive == "truncated":
            png = png[: len(png) // 2]
        if directive == "drip":
            return StreamingResponse(_drip(png), media_type="image/png")
        if directive == "trickle":
            return StreamingResponse(_trickle(png), media_type="image/png")
        return Response(png, media_type="image/png")

    async def health(_: Request) -> Response:
        return JSONResponse({"ok": True, "submits": state.submits, "polls": state.polls})

    async def stats(request: Request) -> Response:
        body = {
            "submits": state.submits,
            "polls": state.polls,
            "accepted": dict(state.accepted),
            "jobs_polled": len(state.last_polled),
            "poll_gaps": _quantiles(state.poll_gaps),
            # prompt → when upstream first said "done" (unix seconds)
            "done_at": {state.prompts.get(j, j): t for j, t in state.first_done.items()},
            "calls_per_second": {str(k): v for k, v in state.calls_per_second.items()},
            "references": dict(state.references),
        }
        if request.query_params.get("reset"):
            state.poll_gaps.clear()
        return JSONResponse(body)

    return Starlette(
        routes=[
            Route("/api/async/detail", detail, methods=["GET"]),
            Route("/api/async/{slug}", submit, methods=["POST"]),
            Route("/results/{job_id}.png", result, methods=["GET"]),
            Route("/v1/images/generations", generations, methods=["POST"]),
            Route("/v1/images/edits", edits, methods=["POST"]),
            Route("/v1/models", openai_models, methods=["GET"]),
            Route("/v1/models/{owner}/{name}/predictions", create_prediction, methods=["POST"]),
            Route("/v1/predictions/{job_id}", get_prediction, methods=["GET"]),
            Route("/v1/predictions/{job_id}/cancel", cancel_prediction, methods=["POST"]),
            Route("/v1/account", replicate_account, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
        ]
    )
