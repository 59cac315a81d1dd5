"""The OpenAI Images double: ``/v1/images/generations``, ``/v1/images/edits``,
``/v1/models``, a ``Bearer`` key. It answers when the picture is done (after the latency)
with ``b64_json``, or a ``url`` when asked, and obeys the directives its way: ``fail`` is a
400 ``content_policy_violation``; ``slowsubmit`` and ``timeout`` make the job (counted)
and answer late (3 s, 9 s); ``garbage`` is a 200 with broken JSON; ``badimage`` and
``truncated`` spoil the inline picture; the URL directives spoil the ``url``. It makes
``n`` pictures (1 to MAX_N, else a 400 as OpenAI's), one fewer under ``fewer``, and counts
their tokens in a ``usage`` as gpt-image's."""

from __future__ import annotations

import base64
import time
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shengtu.providers.sandbox.common import (
    FAIL_MESSAGE,
    SLOW_SECONDS,
    Double,
    delivered,
    parse_directive,
    picture_id,
    result_url,
    retry_after_headers,
)

# OpenAI's sizes → the sandbox's ratios.
OPENAI_SIZES = {"auto": "auto", "1024x1024": "1:1", "1024x1536": "2:3", "1536x1024": "3:2"}
# The pictures one request may ask for (``n``), as OpenAI's images API.
MAX_N = 10
# gpt-image-1's output tokens for one picture, by quality and by square or not.
OUTPUT_TOKENS = {"low": (272, 408), "medium": (1056, 1584), "high": (4160, 6240)}
# Its input tokens for each reference picture of an edit (a 512 px tile's worth and a base).
IMAGE_TOKENS = 194


def _count(value: Any) -> int | JSONResponse:
    """The ``n`` of a request (1 when it names none), or OpenAI's 400 for a wrong one."""
    if value is None:
        return 1
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        kind = {str: "a string", float: "a decimal", bool: "a boolean"}.get(type(value), "a value")
        return _openai_error(
            400,
            "invalid_type",
            f"Invalid type for 'n': expected an integer, but got {kind} instead.",
            param="n",
        )
    if value < 1:
        return _openai_error(
            400,
            "integer_below_min_value",
            f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {value}"
            " instead.",
            param="n",
        )
    if value > MAX_N:
        return _openai_error(
            400,
            "integer_above_max_value",
            f"Invalid 'n': integer above maximum value. Expected a value <= {MAX_N}, but got"
            f" {value} instead.",
            param="n",
        )
    return value


def _usage(prompt: str, size: str, quality: str, pictures: int, references: int) -> dict[str, Any]:
    """A gpt-image ``usage``: the prompt's and references' tokens in, the pictures' out."""
    text_tokens = max(1, len(prompt.encode()) // 4)
    image_tokens = IMAGE_TOKENS * references
    square, oblong = OUTPUT_TOKENS.get(quality, OUTPUT_TOKENS["high"])
    output = (square if size in ("auto", "1:1") else oblong) * pictures
    return {
        "input_tokens": text_tokens + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        "output_tokens": output,
        "total_tokens": text_tokens + image_tokens + output,
    }


def _is_picture(data: bytes) -> bool:
    return (
        data[:8] == b"\x89PNG\r\n\x1a\n"
        or data[:3] == b"\xff\xd8\xff"
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
    )


def _openai_error(
    status: int,
    code: str,
    message: str,
    retry_after: int | None = None,
    param: str | None = None,
) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": code,
            }
        },
        status_code=status,
        headers=retry_after_headers(retry_after),
    )


class OpenAIImagesDouble(Double):
    def routes(self) -> list[Route]:
        return [
            self.route("/v1/images/generations", self.generations, "POST"),
            self.route("/v1/images/edits", self.edits, "POST"),
            self.route("/v1/models", self.openai_models, "GET"),
        ]

    def refused(self) -> Response:
        return _openai_error(401, "invalid_api_key", "Incorrect API key provided")

    async def generations(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _openai_error(400, "invalid_json", "We could not parse the JSON body")
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return _openai_error(400, "missing_required_parameter", "prompt is required")
        return await self.openai_image(request, body["prompt"], body)

    async def edits(self, request: Request) -> Response:
        form = await request.form(max_files=16, max_fields=32, max_part_size=64 * 1024 * 1024)
        prompt = form.get("prompt")
        if not isinstance(prompt, str):
            return _openai_error(400, "missing_required_parameter", "prompt is required")
        files = [f for name in ("image", "image[]") for f in form.getlist(name)]
        pictures = [await f.read() for f in files if not isinstance(f, str)]
        if not pictures or not all(_is_picture(p) for p in pictures):
            return _openai_error(400, "invalid_image", "image must be PNG, JPEG or WEBP files")
        self.state.remember(self.state.references, prompt, [len(p) for p in pictures], 50_000)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        return await self.openai_image(request, prompt, fields, references=len(pictures))

    async def openai_models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "gpt-image-1", "object": "model"}]})

    async def openai_image(
        self, request: Request, prompt: str, fields: dict[str, Any], references: int = 0
    ) -> Response:
        """What an OpenAI images endpoint answers once the request is read: the ``n``
        pictures after the sandbox's latency, inline or as URLs, or the fault a directive
        asks for."""
        state = self.state
        size = OPENAI_SIZES.get(str(fields.get("size") or "auto"))
        if size is None:
            return _openai_error(400, "invalid_value", f"Invalid size: {fields.get('size')}")
        count = _count(fields.get("n"))
        if isinstance(count, JSONResponse):
            return count
        directive = parse_directive(prompt)
        if directive == "error500":
            return _openai_error(500, "server_error", "The server had an error (sandbox)")
        if directive == "submit429" and state.throttle_once(prompt):
            return _openai_error(429, "rate_limit_exceeded", "Rate limit reached", retry_after=1)
        if directive == "fail":
            return _openai_error(400, "content_policy_violation", FAIL_MESSAGE)
        job_id = state.accept(prompt, size, directive, count)
        # The job is made (and paid for) from here on: a lost answer is the caller's doubt.
        if directive == "slowsubmit":
            await anyio.sleep(SLOW_SECONDS)
        elif directive == "timeout":
            await anyio.sleep(SLOW_SECONDS * 3)  # long past any sane client timeout in tests
        await anyio.sleep(state.latency)
        if directive == "garbage":
            return Response('{"created": 1, "data": [', media_type="application/json")
        made = delivered(count, directive)
        items: list[dict[str, Any]] = []
        for index in range(made):
            if fields.get("response_format") == "url":
                items.append({"url": result_url(request, job_id, index)})
                continue
            if directive == "badimage":
                picture = b"<html><body>this is not an image</body></html>"
            else:
                picture = await state.draw(prompt, size, picture_id(job_id, index))
                if directive == "truncated":
                    picture = picture[: len(picture) // 2]
            items.append({"b64_json": base64.b64encode(picture).decode()})
        quality = str(fields.get("quality") or "high")
        usage = _usage(prompt, size, quality, made, references)
        return JSONResponse({"created": int(time.time()), "data": items, "usage": usage})
