"""OpenAI's moderation API's double: ``POST /v1/moderations``, the Bearer key checked
(a wrong one answered 401 ``invalid_api_key``, as OpenAI does), ``input`` as a string,
a list of strings or a list of ``text`` / ``image_url`` items (one result for the items
together), ``image_url`` a data URL or an address it fetches."""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from shengtu.moderation.sandbox.common import ModerationDouble, Outcome, picture_text

MODELS = frozenset(
    {
        "omni-moderation-latest",
        "omni-moderation-2024-09-26",
        "text-moderation-latest",
        "text-moderation-stable",
    }
)
CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# What the double flags text and pictures as.
TEXT_CATEGORY = "violence"
IMAGE_CATEGORY = "sexual"


def _error(status: int, message: str, kind: str, code: str | None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def _result(flagged: dict[str, list[str]]) -> dict[str, Any]:
    """A result with the categories in ``flagged`` (category → the input types that made
    it) set."""
    return {
        "flagged": bool(flagged),
        "categories": {c: c in flagged for c in CATEGORIES},
        "category_scores": {c: 0.97 if c in flagged else 0.0001 for c in CATEGORIES},
        "category_applied_input_types": {c: flagged.get(c, []) for c in CATEGORIES},
    }


class OpenAIModerationDouble(ModerationDouble):
    kind: ClassVar[str] = "openai"
    prefix: ClassVar[str] = "/openai"

    def __init__(self, key: str = "", *, slow_seconds: float = 3.0) -> None:
        super().__init__(slow_seconds=slow_seconds)
        self.key = key or "sk-sbx-" + secrets.token_hex(16)

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/moderations", self._moderations, methods=["POST"])]

    def settings(self, base_url: str) -> dict[str, str]:
        return {
            "SHENGTU_MODERATION_PROVIDER": "openai",
            "SHENGTU_MODERATION_BASE_URL": base_url,
            "SHENGTU_MODERATION_API_KEY": self.key,
        }

    async def _moderations(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.key}":
            self.refused_keys += 1
            return _error(
                401,
                "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        try:
            body = await request.json()
        except ValueError:
            return _error(
                400,
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
                None,
            )
        model = body.get("model", "omni-moderation-latest") if isinstance(body, dict) else None
        if model not in MODELS:
            return _error(
                404,
                f"The model `{model}` does not exist",
                "invalid_request_error",
                "model_not_found",
            )
        items = body.get("input")
        if isinstance(items, str):
            groups = [[{"type": "text", "text": items}]]
        elif isinstance(items, list) and items and all(isinstance(i, str) for i in items):
            groups = [[{"type": "text", "text": i}] for i in items]
        elif isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
            groups = [items]
        else:
            return _error(
                400, "Invalid value for 'input'.", "invalid_request_error", "invalid_value"
            )
        results = []
        for group in groups:
            judged = await self._group(group)
            if judged is None:
                return _error(
                    400,
                    "Invalid image_url: the picture could not be read.",
                    "invalid_request_error",
                    "invalid_image_url",
                )
            if "fail" in judged.values():
                return _error(
                    500,
                    "The server had an error while processing your request.",
                    "server_error",
                    None,
                )
            results.append(
                _result(
                    {
                        (TEXT_CATEGORY if kind == "text" else IMAGE_CATEGORY): [kind]
                        for kind, outcome in judged.items()
                        if outcome == "flag"
                    }
                )
            )
        return JSONResponse(
            {"id": "modr-" + secrets.token_hex(12), "model": model, "results": results}
        )

    async def _group(self, items: list[dict[str, Any]]) -> dict[str, Outcome] | None:
        """The outcome of each kind of input among ``items``; None when a picture is
        unreadable."""
        judged: dict[str, Outcome] = {}
        for item in items:
            if item.get("type") == "text" and isinstance(item.get("text"), str):
                outcome = await self.judge("text", item["text"][:200], item["text"])
            elif item.get("type") == "image_url" and isinstance(item.get("image_url"), dict):
                url = str(item["image_url"].get("url") or "")
                picture = await self._picture(url)
                if picture is None:
                    return None
                outcome = await self.judge(
                    "image", url[:5] if url.startswith("data:") else url, picture_text(picture)
                )
            else:
                return None
            kind = "text" if item.get("type") == "text" else "image"
            if judged.get(kind) not in ("fail", "flag"):
                judged[kind] = outcome
        return judged

    async def _picture(self, url: str) -> bytes | None:
        if url.startswith("data:"):
            _, _, encoded = url.partition(";base64,")
            try:
                return base64.b64decode(encoded, validate=True) or None
            except (binascii.Error, ValueError):
                return None
        return await self.fetch(url)
