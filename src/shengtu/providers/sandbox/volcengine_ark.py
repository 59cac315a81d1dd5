"""The Volcengine Ark (Seedream) double: ``POST /api/v3/images/generations``, a ``Bearer``
key (a wrong one: 401 ``AuthenticationError``, as Ark's).

It knows Seedream 4.0 (``doubao-seedream-4-0-250828``, and any endpoint id ``ep-…``, as
4.0), 4.5 and 3.0 t2i, each with its own sizes (``1K``/``2K``/``4K`` presets, ``WxH`` within
its pixel range), reference pictures (10 for 4.0, 14 for 4.5, none for 3.0 t2i: URLs or
``data:image/…;base64,`` strings) and sets (``sequential_image_generation: "auto"`` makes
``max_images`` pictures, or one when it names none: the double cannot read a prompt; the
references and the set together at most 15). Anything else is Ark's 400
``InvalidParameter`` / ``MissingParameter`` naming the field, an unknown model its 404
``InvalidEndpointOrModel.NotFound``. It answers after the latency, with every picture as a
``url`` (the shared results route) or ``b64_json``, its ``size`` as Seedream would make it
(drawn at the sandbox's own sizes), and ``usage`` as Ark counts it (``output_tokens`` =
Σ width × height / 256). Every answer carries an ``X-Request-Id``. It does not stream
(``stream: true`` is a 400 of its own).

The directives, its way:

- ``fail``: the job runs (counted), then 400 ``OutputImageSensitiveContentDetected``
- ``error500``: 500 ``InternalServiceError``; ``submit429``: 429
  ``ModelAccountIpmRateLimitExceeded`` once, then accepted
- ``slowsubmit`` / ``timeout``: the job is made (counted) and answered 3 s / 9 s late
- ``garbage``: a 200 with broken JSON
- ``badimage``: alone, the picture is not an image (inline, or at its URL); in a set, the
  last picture is a ``data[].error`` entry (moderated on its own) and the others are fine
- ``fewer``: a set makes one picture fewer than ``max_images`` (no error: the model chose)
- ``truncated``: an inline picture is cut in half; it and the other result-URL words
  (``result404``, ``redirectprivate``, ``html``, ``huge``, ``drip``, ``trickle``) spoil the
  ``url`` at the shared results route
- ``slowpoll``, ``poll429``, ``status7``: nothing to poll: a normal job
"""

from __future__ import annotations

import base64
import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shengtu.providers.sandbox.common import (
    SIZES,
    SLOW_SECONDS,
    Double,
    delivered,
    parse_directive,
    picture_id,
    result_url,
)

# A request's reference pictures and the set it asks for, together (Ark's limit).
MAX_IN_AND_OUT = 15
_WXH = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")
_DATA_URL = re.compile(r"^data:image/[a-z]+;base64,[A-Za-z0-9+/=]+$")
_STATUS_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "NotFound",
    429: "TooManyRequests",
    500: "InternalServerError",
}


@dataclass(frozen=True)
class Seedream:
    """What one Seedream model takes."""

    # The preset resolutions (the model picks the shape) and the side of each.
    presets: dict[str, int]
    # The total pixels a ``WxH`` size may have.
    pixels: tuple[int, int]
    default_size: str
    references: int
    sets: bool


SEEDREAM_4_0_ID = "doubao-seedream-4-0-250828"
SEEDREAM_4_0 = Seedream(
    {"1K": 1024, "2K": 2048, "4K": 4096}, (921_600, 16_777_216), "2048x2048", 10, True
)
SEEDREAM = {
    SEEDREAM_4_0_ID: SEEDREAM_4_0,
    "doubao-seedream-4-5-251128": Seedream(
        {"2K": 2048, "4K": 4096}, (3_686_400, 16_777_216), "2048x2048", 14, True
    ),
    "doubao-seedream-3-0-t2i-250415": Seedream({}, (512 * 512, 2048 * 2048), "1024x1024", 0, False),
}


def _request_id() -> str:
    return f"02{int(time.time() * 1000)}{secrets.token_hex(8)}"


def ark_error(
    status: int,
    code: str,
    message: str,
    *,
    param: str = "",
    request_id: str | None = None,
) -> JSONResponse:
    """An Ark error answer: its body, and the request id it names."""
    request_id = request_id or _request_id()
    return JSONResponse(
        {
            "error": {
                "code": code,
                "message": f"{message} Request id: {request_id}",
                "param": param,
                "type": _STATUS_TYPES.get(status, "BadRequest"),
            }
        },
        status_code=status,
        headers={"X-Request-Id": request_id},
    )


def _invalid(param: str, why: str) -> JSONResponse:
    return ark_error(
        400,
        "InvalidParameter",
        f"The parameter `{param}` specified in the request is not valid: {why}.",
        param=param,
    )


def _shape(width: int, height: int) -> str:
    """The sandbox ratio nearest ``width`` × ``height``."""
    ratio = math.log(width / height)
    return min(
        (name for name in SIZES if name != "auto"),
        key=lambda name: abs(math.log(SIZES[name][0] / SIZES[name][1]) - ratio),
    )


def _size(model: Seedream, value: Any) -> tuple[int, int, str] | str:
    """(width, height, sandbox ratio) of a ``size``, or why it is refused."""
    value = model.default_size if value is None else value
    if not isinstance(value, str):
        return "expected a string"
    if value in model.presets:
        # The model picks the shape from the prompt; the double, a square.
        side = model.presets[value]
        return side, side, "1:1"
    m = _WXH.match(value)
    if m is None:
        offered = "/".join(model.presets)
        return f"expected {offered + ' or ' if offered else ''}<width>x<height>"
    width, height = int(m.group(1)), int(m.group(2))
    low, high = model.pixels
    if not low <= width * height <= high:
        return f"total pixels must be within [{low}, {high}]"
    if not 1 / 16 <= width / height <= 16:
        return "the aspect ratio must be within [1/16, 16]"
    return width, height, _shape(width, height)


def _references(model: Seedream, value: Any) -> list[str] | JSONResponse:
    if value is None:
        return []
    images = [value] if isinstance(value, str) else value
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        return _invalid("image", "expected a string or an array of strings")
    if images and not model.references:
        return _invalid("image", "the model does not take reference images")
    if len(images) > model.references:
        return _invalid("image", f"at most {model.references} images")
    for image in images:
        if not (image.startswith(("http://", "https://")) or _DATA_URL.match(image)):
            return _invalid("image", "expected a URL or data:image/<format>;base64,<data>")
    return images


def _set_size(model: Seedream, body: dict[str, Any], references: int) -> int | JSONResponse:
    """How many pictures the request asks for."""
    mode = body.get("sequential_image_generation", "disabled")
    if mode not in ("auto", "disabled"):
        return _invalid("sequential_image_generation", "expected auto or disabled")
    options = body.get("sequential_image_generation_options")
    if options is not None and not isinstance(options, dict):
        return _invalid("sequential_image_generation_options", "expected an object")
    asked = (options or {}).get("max_images")
    if asked is not None and (
        not isinstance(asked, int) or isinstance(asked, bool) or not 1 <= asked <= 15
    ):
        return _invalid("sequential_image_generation_options.max_images", "within [1, 15]")
    if mode != "auto" or not model.sets:
        return 1
    count = asked or 1
    if references + count > MAX_IN_AND_OUT:
        return _invalid(
            "sequential_image_generation_options.max_images",
            f"reference images plus max_images must not exceed {MAX_IN_AND_OUT}",
        )
    return count


class VolcengineArkDouble(Double):
    def routes(self) -> list[Route]:
        return [self.route("/api/v3/images/generations", self.generations, "POST")]

    def refused(self) -> Response:
        return ark_error(
            401, "AuthenticationError", "The API key or AK/SK in the request is missing or invalid."
        )

    async def generations(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return ark_error(400, "InvalidParameter", "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return ark_error(400, "InvalidParameter", "The request body must be a JSON object.")
        for field in ("model", "prompt"):
            if not isinstance(body.get(field), str) or not body[field]:
                return ark_error(
                    400,
                    "MissingParameter",
                    "The request failed because it is missing one or multiple required"
                    f" parameters: {field}.",
                    param=field,
                )
        name, prompt = body["model"], body["prompt"]
        model = SEEDREAM_4_0 if name.startswith("ep-") else SEEDREAM.get(name)
        if model is None:
            return ark_error(
                404,
                "InvalidEndpointOrModel.NotFound",
                f"The model or endpoint {name[:64]} does not exist or you do not have access"
                " to it.",
            )
        if body.get("stream") not in (None, False):
            return _invalid("stream", "the sandbox answers whole, never as a stream")
        response_format = body.get("response_format", "url")
        if response_format not in ("url", "b64_json"):
            return _invalid("response_format", "expected url or b64_json")
        if not isinstance(body.get("watermark", False), bool):
            return _invalid("watermark", "expected a boolean")
        seed = body.get("seed", -1)
        if not isinstance(seed, int) or isinstance(seed, bool) or not -1 <= seed <= 2**31 - 1:
            return _invalid("seed", "within [-1, 2147483647]")
        size = _size(model, body.get("size"))
        if isinstance(size, str):
            return _invalid("size", size)
        references = _references(model, body.get("image"))
        if isinstance(references, JSONResponse):
            return references
        count = _set_size(model, body, len(references))
        if isinstance(count, JSONResponse):
            return count
        return await self.generate(
            request, name, prompt, size, references, count, response_format == "url"
        )

    async def generate(
        self,
        request: Request,
        model: str,
        prompt: str,
        size: tuple[int, int, str],
        references: list[str],
        count: int,
        by_url: bool,
    ) -> Response:
        """A valid request's answer, after the latency, or the fault its directive asks."""
        state = self.state
        width, height, shape = size
        directive = parse_directive(prompt)
        if directive == "error500":
            return ark_error(
                500, "InternalServiceError", "The service encountered an unexpected internal error."
            )
        if directive == "submit429" and state.throttle_once(prompt):
            return ark_error(
                429,
                "ModelAccountIpmRateLimitExceeded",
                "The model IPM limit has been exceeded. Please try again later.",
            )
        if references:
            state.remember(state.references, prompt, [len(r) for r in references], 50_000)
        # In a set, ``badimage`` is one picture refused on its own: the others are served
        # clean, so neither the job (for the results route) nor they carry the directive.
        one_bad = directive == "badimage" and count > 1
        spoils = "" if one_bad else directive
        job_id = state.accept(prompt, shape, spoils, count)
        # The job runs and is paid for from here on: a lost answer is the caller's doubt.
        if directive == "slowsubmit":
            await anyio.sleep(SLOW_SECONDS)
        elif directive == "timeout":
            await anyio.sleep(SLOW_SECONDS * 3)  # long past any sane client timeout in tests
        await anyio.sleep(state.latency)
        request_id = _request_id()
        if directive == "fail":
            return ark_error(
                400,
                "OutputImageSensitiveContentDetected",
                "The request failed because the output image may contain sensitive information.",
                request_id=request_id,
            )
        if directive == "garbage":
            return Response(
                '{"model": "doubao-seedream", "data": [',
                media_type="application/json",
                headers={"X-Request-Id": request_id},
            )
        made = delivered(count, spoils) - (1 if one_bad else 0)
        items: list[dict[str, Any]] = []
        for index in range(made):
            item: dict[str, Any] = {"size": f"{width}x{height}"}
            if by_url:
                item["url"] = result_url(request, job_id, index)
            else:
                item["b64_json"] = base64.b64encode(
                    await self.inline(prompt, shape, picture_id(job_id, index), spoils)
                ).decode()
            items.append(item)
        if one_bad:
            items.append(
                {
                    "error": {
                        "code": "OutputImageSensitiveContentDetected",
                        "message": "The output image may contain sensitive information.",
                    }
                }
            )
        tokens = round(made * width * height / 256)
        return JSONResponse(
            {
                # An endpoint's answer names the model behind it (here, always 4.0).
                "model": model if model in SEEDREAM else SEEDREAM_4_0_ID,
                "created": int(time.time()),
                "data": items,
                "usage": {
                    "generated_images": made,
                    "output_tokens": tokens,
                    "total_tokens": tokens,
                },
            },
            headers={"X-Request-Id": request_id},
        )

    async def inline(self, prompt: str, shape: str, picture: str, directive: str) -> bytes:
        if directive == "badimage":
            return b"<html><body>this is not an image</body></html>"
        png = await self.state.draw(prompt, shape, picture)
        return png[: len(png) // 2] if directive == "truncated" else png
