"""What every protocol's double shares: the state, the ``[sandbox:...]`` faults, the
pictures, the key check, and the routes no protocol owns (results, health, stats).

A job's id carries its start time, aspect ratio, directive and how many pictures it was
asked for, so the sandbox needs no state to answer a poll: a task submitted before a
restart still completes after it. A job of several pictures has one result URL for each
(``picture_id``). Prompt directives make it misbehave on purpose:

- ``[sandbox:fail]``      the job fails as the protocol says a prompt was refused
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
- ``[sandbox:fewer]``  the job delivers one picture fewer than it was asked for (n=4 → 3),
  and still one when asked for one: the task is charged for what it delivers

and, for the labels' tests, pictures in the other formats upstreams deliver:

- ``[sandbox:jpeg]`` / ``[sandbox:webp]``  the result is a JPEG (with EXIF) / a lossy WebP

Each protocol's double (a module beside this one) says how it shows each fault.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

# The aspect ratios the doubles draw: the 速创 models' four, and the wider ones FLUX offers
# (at FLUX's own sizes), which the Replicate double takes.
SIZES = {
    "auto": (1024, 1024),
    "1:1": (1024, 1024),
    "2:3": (1024, 1536),
    "3:2": (1536, 1024),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
    "4:3": (1152, 896),
    "3:4": (896, 1152),
}
# Ratios only Gemini offers, at Gemini's own sizes: drawn, yet no other double accepts them
# (the Replicate double takes the ratios of SIZES).
GEMINI_ONLY_SIZES = {"4:5": (896, 1152), "5:4": (1152, 896), "21:9": (1536, 672)}
DRAWN_SIZES = {**SIZES, **GEMINI_ONLY_SIZES}
SUCHUANG_SIZES = ("auto", "1:1", "2:3", "3:2")
# Never "i": a picture's id ends in "-i<index>".
_SIZE_CODE = {
    "auto": "a",
    "1:1": "s",
    "2:3": "p",
    "3:2": "l",
    "16:9": "w",
    "9:16": "v",
    "4:3": "f",
    "3:4": "t",
    "4:5": "o",
    "5:4": "e",
    "21:9": "u",
}
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
    "fewer": "m",
    "jpeg": "j",
    "webp": "k",
}
_CODE_DIRECTIVE = {code: name for name, code in DIRECTIVES.items() if code != "n"}
SLOW_SECONDS = 3.0
HUGE_BYTES = 200 * 1024 * 1024
DRIP_SECONDS = 1.0
TRICKLE_BYTES = 1024
K = TypeVar("K")
V = TypeVar("V")
_DIRECTIVE_RE = re.compile(r"\[sandbox:([a-z0-9]+)\]")
# A job of several pictures ends in ``-n<count>`` (older ids, of one picture, have none);
# a picture after its job's first is ``<job id>-i<index>``.
_ID_RE = re.compile(
    r"^image_[0-9a-f]{12}-([0-9a-f]{1,14})-(["
    + "".join(_SIZE_CODE.values())
    + r"])([a-z0-9])(?:-n([1-9][0-9]?))?$"
)
_PICTURE_RE = re.compile(r"^(.+)-i([1-9][0-9]?)$")
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


def new_job_id(size: str, directive: str, now_ms: int, count: int = 1) -> str:
    """A job's id; ``count``: the pictures it was asked for (1 to 99)."""
    code = DIRECTIVES.get(directive, "n")
    suffix = f"-n{count}" if count > 1 else ""
    return f"image_{secrets.token_hex(6)}-{now_ms:x}-{_SIZE_CODE[size]}{code}{suffix}"


def parse_job_id(job_id: str) -> tuple[int, str, str] | None:
    """(start ms, size, directive) of a job id this sandbox made."""
    m = _ID_RE.match(job_id)
    if not m:
        return None
    directive = _CODE_DIRECTIVE.get(m.group(3), "")
    return int(m.group(1), 16), _CODE_SIZE[m.group(2)], directive


def job_count(job_id: str) -> int:
    """How many pictures a job id of this sandbox was asked for (1 for an older id)."""
    m = _ID_RE.match(job_id)
    return int(m.group(4)) if m and m.group(4) else 1


def delivered(count: int, directive: str) -> int:
    """How many pictures a job asked for ``count`` makes: one fewer under ``fewer``, never none."""
    return max(1, count - 1) if directive == "fewer" else count


def picture_id(job_id: str, index: int) -> str:
    """The id of a job's picture ``index`` (from 0): the job's own id for the first."""
    return job_id if index == 0 else f"{job_id}-i{index}"


def parse_picture_id(picture: str) -> tuple[str, int] | None:
    """(job id, index) of a picture id, when its job made that picture."""
    m = None if _ID_RE.match(picture) else _PICTURE_RE.match(picture)
    job_id, index = (m.group(1), int(m.group(2))) if m else (picture, 0)
    parsed = parse_job_id(job_id)
    if parsed is None or index >= delivered(job_count(job_id), parsed[2]):
        return None
    return job_id, index


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
    width, height = (max(16, round(side * scale)) for side in DRAWN_SIZES[size])
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


def converted(png: bytes, directive: str) -> bytes:
    """A drawn PNG as the JPEG (with a camera-like EXIF orientation tag, which a label must
    keep) or the lossy WebP some upstreams deliver."""
    out = io.BytesIO()
    with Image.open(io.BytesIO(png)) as img:
        if directive == "jpeg":
            exif = Image.Exif()
            exif[0x0112] = 1  # orientation: upright
            img.convert("RGB").save(out, "JPEG", quality=90, exif=exif.tobytes())
        else:
            img.save(out, "WEBP", quality=85)
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
        # prompt → the sizes of the reference pictures its job carried.
        self.references: OrderedDict[str, list[int]] = OrderedDict()
        # Jobs a caller canceled (in a protocol that can cancel).
        self.canceled: set[str] = set()

    def count_call(self) -> None:
        second = int(time.time())
        self.remember(self.calls_per_second, second, self.calls_per_second.get(second, 0) + 1, 3600)

    def accept(self, prompt: str, size: str, directive: str, count: int = 1) -> str:
        """A job made (of ``count`` pictures), in any protocol: its id, counted per prompt."""
        self.submits += 1
        job_id = new_job_id(size, directive, int(time.time() * 1000), count)
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

    async def draw(self, prompt: str, size: str, job_id: str) -> bytes:
        """A job's picture, drawn off the event loop."""
        return await anyio.to_thread.run_sync(
            draw_png, prompt, size, job_id, self.font_path, self.scale
        )


def retry_after_headers(seconds: int | None) -> dict[str, str] | None:
    """The headers of a throttled answer (none when it names no wait)."""
    return {"Retry-After": str(seconds)} if seconds is not None else None


def result_url(request: Request, job_id: str, index: int = 0) -> str:
    """Where a job's picture ``index`` is fetched (every protocol's, from the shared route)."""
    return f"{str(request.base_url).rstrip('/')}/results/{picture_id(job_id, index)}.png"


def result_urls(request: Request, job_id: str) -> list[str]:
    """Where each picture the job delivers is fetched."""
    parsed = parse_job_id(job_id)
    count = delivered(job_count(job_id), parsed[2] if parsed else "")
    return [result_url(request, job_id, index) for index in range(count)]


Handler = Callable[[Request], Awaitable[Response]]


class Double(ABC):
    """One protocol's double: its routes, each behind the protocol's key check, so a wrong
    key is refused (HTTP 401, in the protocol's words) on every route of every protocol."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    @abstractmethod
    def routes(self) -> list[Route]:
        """The protocol's routes, each made by ``route``."""

    @abstractmethod
    def refused(self) -> Response:
        """The protocol's answer to a wrong key."""

    # Where the double's routes are mounted in the sandbox ("" : at its root). A protocol
    # whose paths another protocol also has (``/v1/images/generations``) has a prefix of its
    # own; its channels' base URL ends with it (the registry's ``sandbox_path``).
    prefix = ""

    def key(self, request: Request) -> str:
        """The key a caller sent: a ``Bearer`` token unless the protocol says otherwise."""
        return request.headers.get("authorization", "").removeprefix("Bearer ")

    async def authorized(self, request: Request) -> bool:
        """Whether the caller holds one of the sandbox's keys. A protocol that signs its
        requests (an HMAC over the request, a JWT) checks the signature here, with the
        request's body when it is signed too (``await request.body()`` can be read again
        by the handler)."""
        return self.state.accepts(self.key(request))

    def route(self, path: str, handler: Handler, method: str) -> Route:
        """``handler`` at ``path``, behind the key check. Every call is counted, refused or
        not: an upstream's rate limit counts what arrives."""

        async def guarded(request: Request) -> Response:
            self.state.count_call()
            if not await self.authorized(request):
                return self.refused()
            return await handler(request)

        return Route(path, guarded, methods=[method], name=handler.__name__)


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


class Shared:
    """The routes no protocol owns: the pictures every double's results point at (where the
    result-URL faults happen), health, and the counts tests and the benchmark read."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/results/{picture}.png", self.result, methods=["GET"]),
            Route("/healthz", self.health, methods=["GET"]),
            Route("/stats", self.stats, methods=["GET"]),
        ]

    async def result(self, request: Request) -> Response:
        state = self.state
        picture = request.path_params["picture"]
        found = parse_picture_id(picture)
        parsed = parse_job_id(found[0]) if found else None
        if found is None or parsed is None:
            return Response("not found", status_code=404)
        job_id = found[0]
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
        png = state.images.get(picture)
        if png is None:
            prompt = state.prompts.get(job_id, "(沙箱重启后提示词已不在内存中)")
            png = await state.draw(prompt, size, picture)
            state.remember(state.images, picture, png, 64)
        if directive in ("jpeg", "webp"):
            png = await anyio.to_thread.run_sync(converted, png, directive)
        if directive == "truncated":
            png = png[: len(png) // 2]
        if directive == "drip":
            return StreamingResponse(_drip(png), media_type="image/png")
        if directive == "trickle":
            return StreamingResponse(_trickle(png), media_type="image/png")
        kinds = {"jpeg": "image/jpeg", "webp": "image/webp"}
        return Response(png, media_type=kinds.get(directive, "image/png"))

    async def health(self, _: Request) -> Response:
        state = self.state
        return JSONResponse({"ok": True, "submits": state.submits, "polls": state.polls})

    async def stats(self, request: Request) -> Response:
        state = self.state
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
