"""The Gemini API double: ``POST /v1beta/models/{model}:generateContent`` and the model
list (``GET /v1beta/models``, ``GET /v1beta/models/{model}``), the key in
``x-goog-api-key`` (or ``?key=``). A wrong key is Google's 400 ``INVALID_ARGUMENT`` with
the ``API_KEY_INVALID`` reason; a right one beside an ``Authorization`` header is a 401
(Google reads that header as an OAuth token).

It knows the image models (a name ``gemini-…image…``; any other is a 404 ``NOT_FOUND``),
reads the user turn's text and its inline pictures (``inline_data`` or ``inlineData``),
and answers after the latency with one picture inline at ``imageConfig.aspectRatio`` (the
first reference's nearest ratio when none is asked, else 1:1), twice or four times as
large for ``imageSize`` 2K or 4K on a gemini-3 model (gemini-2.5-flash-image has 1K only),
a text part beside it when ``responseModalities`` has ``TEXT``, a draft marked ``thought``
before it when ``thinkingConfig.includeThoughts`` asks, and ``usageMetadata`` in tokens as
Google counts them (1290 a picture for gemini-2.5-flash-image; 1120, 2000 at 4K, for
gemini-3). ``candidateCount`` above one is refused as the real one refuses it.

The directives, its way: ``fail`` is a safety block in a 200: a prompt alone is blocked
(``promptFeedback.blockReason`` ``PROHIBITED_CONTENT``, no candidate), a prompt with
reference pictures has its picture blocked (``finishReason`` ``IMAGE_SAFETY``, no
content); ``error500`` a 500 ``INTERNAL``; ``submit429`` a 429 ``RESOURCE_EXHAUSTED`` (with
``RetryInfo`` 1s) once; ``slowsubmit`` and ``timeout`` make the picture (counted) and
answer late (3 s, 9 s); ``garbage`` is a 200 with broken JSON; ``badimage`` an
``inlineData`` that is not a picture; ``truncated`` a PNG cut in half; ``html`` the model
writing instead of drawing (a text part only, ``finishReason`` ``STOP``). Each call is one
picture: ``fewer`` changes nothing, and the words of polls and result URLs have nothing to
spoil here (a normal picture).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import secrets
from typing import Any

import anyio
from PIL import Image, UnidentifiedImageError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shengtu.providers.sandbox.common import (
    SLOW_SECONDS,
    Double,
    Handler,
    draw_png,
    parse_directive,
)

# The ratios the image models draw (each in the sandbox's drawing sizes).
RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGE_SIZES = {"1K": 1, "2K": 2, "4K": 4}
MODALITIES = ("TEXT", "IMAGE", "AUDIO")
# Tokens, as Google counts them: a picture drawn by gemini-2.5-flash-image, by a gemini-3
# image model at 1K/2K and at 4K, and a picture given as input.
FLASH_IMAGE_TOKENS = 1290
PRO_IMAGE_TOKENS = (1120, 2000)
INPUT_IMAGE_TOKENS = 258
TEXT_REPLY = "好的,这是按你的描述生成的图片(沙箱)。"
REFUSAL_TEXT = "抱歉,我无法根据这个描述生成图片(沙箱模拟模型只回复了文字)。"
LISTED = (
    ("gemini-2.5-flash-image", "Nano Banana"),
    ("gemini-3-pro-image-preview", "Nano Banana Pro"),
)
UNAVAILABLE = (
    "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)


def _google_error(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> JSONResponse:
    error: dict[str, Any] = {"code": status, "message": message, "status": code}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status)


def _is_image_model(model: str) -> bool:
    return model.startswith("gemini-") and "image" in model


def _nearest_ratio(picture: bytes) -> str:
    """The image models' ratio nearest to a reference picture's (their default)."""
    try:
        width, height = Image.open(io.BytesIO(picture)).size
    except (UnidentifiedImageError, OSError):
        return "1:1"

    def off(ratio: str) -> float:
        w, h = (int(side) for side in ratio.split(":"))
        return abs(math.log((width / height) / (w / h)))

    return min(RATIOS, key=off)


def _is_picture(data: bytes) -> bool:
    return (
        data[:8] == b"\x89PNG\r\n\x1a\n"
        or data[:3] == b"\xff\xd8\xff"
        or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
    )


class GeminiRequest:
    """What a generateContent request asks, or the 400 the real one answers it with."""

    def __init__(self, model: str, body: Any) -> None:
        self.error: JSONResponse | None = None
        self.prompt = ""
        self.pictures: list[bytes] = []
        self.modalities: list[str] = ["TEXT", "IMAGE"]
        self.ratio = ""
        self.image_size = "1K"
        self.thoughts = False
        contents = body.get("contents") if isinstance(body, dict) else None
        if not isinstance(contents, list) or not contents:
            self.refuse("* GenerateContentRequest.contents: contents is not specified\n")
            return
        texts: list[str] = []
        for turn_index, turn in enumerate(contents):
            parts = turn.get("parts") if isinstance(turn, dict) else None
            for part_index, part in enumerate(parts if isinstance(parts, list) else []):
                if not isinstance(part, dict):
                    continue
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                inline = part.get("inline_data") or part.get("inlineData")
                if isinstance(inline, dict):
                    where = f"contents[{turn_index}].parts[{part_index}].inline_data.data"
                    data = str(inline.get("data") or "")
                    try:
                        picture = base64.b64decode(data, validate=True)
                    except (binascii.Error, ValueError):
                        self.refuse(
                            f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed"
                            f' for "{data[:20]}"'
                        )
                        return
                    if not _is_picture(picture):
                        self.refuse(
                            "Unable to process input image. Please retry or report in "
                            "https://developers.generativeai.google/guide/troubleshooting"
                        )
                        return
                    self.pictures.append(picture)
        self.prompt = "\n".join(texts)
        if not self.prompt.strip() and not self.pictures:
            self.refuse(
                "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n"
            )
            return
        config = body.get("generationConfig") or body.get("generation_config") or {}
        if not isinstance(config, dict):
            self.refuse(
                "Invalid value at 'generation_config' (type.googleapis.com/"
                "google.ai.generativelanguage.v1beta.GenerationConfig)"
            )
            return
        self.read_config(model, config)

    def refuse(self, message: str) -> None:
        self.error = _google_error(400, "INVALID_ARGUMENT", message)

    def read_config(self, model: str, config: dict[str, Any]) -> None:
        count = config.get("candidateCount", config.get("candidate_count", 1))
        if count != 1:
            self.refuse(f"Multiple candidates is not enabled for models/{model}")
            return
        modalities = config.get("responseModalities", config.get("response_modalities"))
        if modalities is not None:
            for index, value in enumerate(modalities if isinstance(modalities, list) else [0]):
                if value not in MODALITIES:
                    self.refuse(
                        f"Invalid value at 'generation_config.response_modalities[{index}]' "
                        "(type.googleapis.com/google.ai.generativelanguage.v1beta."
                        f'GenerationConfig.Modality), "{value}"'
                    )
                    return
            self.modalities = list(modalities)
        image = config.get("imageConfig") or config.get("image_config") or {}
        ratio = (
            image.get("aspectRatio", image.get("aspect_ratio")) if isinstance(image, dict) else None
        )
        if ratio is not None and ratio not in RATIOS:
            self.refuse(f"Unsupported aspect ratio: {ratio}. Supported: {', '.join(RATIOS)}")
            return
        size = image.get("imageSize", image.get("image_size")) if isinstance(image, dict) else None
        if size is not None and size not in IMAGE_SIZES:
            self.refuse(f"Unsupported image size: {size}. Supported: {', '.join(IMAGE_SIZES)}")
            return
        self.ratio = str(ratio or (_nearest_ratio(self.pictures[0]) if self.pictures else "1:1"))
        # gemini-2.5-flash-image draws at 1K whatever is asked.
        if size is not None and model.startswith("gemini-3"):
            self.image_size = str(size)
        thinking = config.get("thinkingConfig") or config.get("thinking_config") or {}
        self.thoughts = isinstance(thinking, dict) and bool(
            thinking.get("includeThoughts", thinking.get("include_thoughts"))
        )


class GeminiDouble(Double):
    def routes(self) -> list[Route]:
        return [
            self.route("/v1beta/models/{model}:generateContent", self.generate_content, "POST"),
            self.route("/v1beta/models", self.list_models, "GET"),
            self.route("/v1beta/models/{model}", self.get_model, "GET"),
        ]

    def key(self, request: Request) -> str:
        return request.headers.get("x-goog-api-key") or request.query_params.get("key", "")

    def route(self, path: str, handler: Handler, method: str) -> Route:
        """Behind the key check, Google's reading of an ``Authorization`` header: an OAuth
        token, which an API key is not (a client sending its key there too is refused)."""

        async def oauth_checked(request: Request) -> Response:
            if "authorization" in request.headers:
                return _google_error(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access "
                    "token, login cookie or other valid authentication credential.",
                    [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                            "domain": "googleapis.com",
                        }
                    ],
                )
            return await handler(request)

        oauth_checked.__name__ = handler.__name__
        return super().route(path, oauth_checked, method)

    def refused(self) -> Response:
        return _google_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": "API key not valid. Please pass a valid API key.",
                },
            ],
        )

    @staticmethod
    def not_found(model: str) -> JSONResponse:
        return _google_error(
            404,
            "NOT_FOUND",
            f"models/{model} is not found for API version v1beta, or is not supported for "
            "generateContent. Call ListModels to see the list of available models and their "
            "supported methods.",
        )

    @staticmethod
    def model_card(name: str, display: str) -> dict[str, Any]:
        return {
            "name": f"models/{name}",
            "version": "2.0",
            "displayName": display,
            "inputTokenLimit": 32768,
            "outputTokenLimit": 32768,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
        }

    async def list_models(self, request: Request) -> Response:
        try:
            size = max(1, int(request.query_params.get("pageSize", "50")))
        except ValueError:
            return _google_error(400, "INVALID_ARGUMENT", "Invalid page_size")
        models = [self.model_card(name, display) for name, display in LISTED]
        body: dict[str, Any] = {"models": models[:size]}
        if size < len(models):
            body["nextPageToken"] = secrets.token_urlsafe(12)
        return JSONResponse(body)

    async def get_model(self, request: Request) -> Response:
        model = request.path_params["model"]
        if not _is_image_model(model):
            return self.not_found(model)
        return JSONResponse(self.model_card(model, model))

    async def generate_content(self, request: Request) -> Response:
        state = self.state
        model = request.path_params["model"]
        if not _is_image_model(model):
            return self.not_found(model)
        try:
            body = await request.json()
        except ValueError:
            return _google_error(
                400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unexpected token."
            )
        asked = GeminiRequest(model, body)
        if asked.error is not None:
            return asked.error
        prompt = asked.prompt
        directive = parse_directive(prompt)
        if directive == "error500":
            return _google_error(500, "INTERNAL", UNAVAILABLE)
        if directive == "submit429" and state.throttle_once(prompt):
            return _google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details."
                " (sandbox)",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {
                                "quotaMetric": "generativelanguage.googleapis.com/"
                                "generate_content_paid_tier_requests",
                                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                            }
                        ],
                    },
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"},
                ],
            )
        if asked.pictures:
            state.remember(state.references, prompt, [len(p) for p in asked.pictures], 50_000)
        # From here the model has the request: it runs, and is paid for, whatever follows.
        job_id = state.accept(prompt, asked.ratio, directive)
        if directive == "slowsubmit":
            await anyio.sleep(SLOW_SECONDS)
        elif directive == "timeout":
            await anyio.sleep(SLOW_SECONDS * 3)  # long past any sane client timeout in tests
        await anyio.sleep(state.latency)
        if directive == "garbage":
            return Response(
                '{"candidates": [{"content": {"parts": [', media_type="application/json"
            )
        answer: dict[str, Any] = {"modelVersion": model, "responseId": secrets.token_urlsafe(16)}
        usage = self.usage(model, asked)
        if directive == "fail" and not asked.pictures:
            return JSONResponse(
                {
                    "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                    "usageMetadata": usage,
                    **answer,
                }
            )
        if directive == "fail":
            candidate = {"finishReason": "IMAGE_SAFETY", "index": 0}
            return JSONResponse({"candidates": [candidate], "usageMetadata": usage, **answer})
        if directive == "html" or "IMAGE" not in asked.modalities:
            parts: list[dict[str, Any]] = [{"text": REFUSAL_TEXT}]
            usage = self.usage(model, asked, text=True)
        else:
            parts = await self.parts(asked, job_id, directive)
            usage = self.usage(model, asked, image=True, text="TEXT" in asked.modalities)
        candidate = {
            "content": {"parts": parts, "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
        return JSONResponse({"candidates": [candidate], "usageMetadata": usage, **answer})

    async def parts(
        self, asked: GeminiRequest, job_id: str, directive: str
    ) -> list[dict[str, Any]]:
        """The answer's parts: its words, its draft when thoughts are asked, its picture."""
        state = self.state
        parts: list[dict[str, Any]] = []
        if "TEXT" in asked.modalities:
            parts.append({"text": TEXT_REPLY})
        scale = state.scale * IMAGE_SIZES[asked.image_size]
        if asked.thoughts:
            draft = await anyio.to_thread.run_sync(
                draw_png,
                "草稿 " + asked.prompt,
                asked.ratio,
                job_id,
                state.font_path,
                state.scale / 4,
            )
            parts.append(
                {"inlineData": {"mimeType": "image/png", "data": _b64(draft)}, "thought": True}
            )
        if directive == "badimage":
            picture = b"<html><body>this is not an image</body></html>"
        else:
            picture = await anyio.to_thread.run_sync(
                draw_png, asked.prompt, asked.ratio, job_id, state.font_path, scale
            )
            if directive == "truncated":
                picture = picture[: len(picture) // 2]
        parts.append({"inlineData": {"mimeType": "image/png", "data": _b64(picture)}})
        return parts

    @staticmethod
    def usage(
        model: str, asked: GeminiRequest, *, image: bool = False, text: bool = False
    ) -> dict[str, Any]:
        """``usageMetadata``: the prompt's and references' tokens in, the picture's and the
        words' out (none for a blocked prompt)."""
        text_in = max(1, len(asked.prompt.encode()) // 4)
        image_in = INPUT_IMAGE_TOKENS * len(asked.pictures)
        prompt_details = [{"modality": "TEXT", "tokenCount": text_in}]
        if image_in:
            prompt_details.append({"modality": "IMAGE", "tokenCount": image_in})
        out_details: list[dict[str, Any]] = []
        if image:
            if model.startswith("gemini-3"):
                image_out = PRO_IMAGE_TOKENS[1 if asked.image_size == "4K" else 0]
            else:
                image_out = FLASH_IMAGE_TOKENS
            out_details.append({"modality": "IMAGE", "tokenCount": image_out})
        if text:
            out_details.append({"modality": "TEXT", "tokenCount": 16})
        out = sum(d["tokenCount"] for d in out_details)
        usage: dict[str, Any] = {
            "promptTokenCount": text_in + image_in,
            "totalTokenCount": text_in + image_in + out,
            "promptTokensDetails": prompt_details,
        }
        if out:
            usage["candidatesTokenCount"] = out
            usage["candidatesTokensDetails"] = out_details
        return usage


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
