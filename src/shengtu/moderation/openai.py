"""OpenAI's moderation API: ``POST /v1/moderations`` with ``omni-moderation-latest``,
a text or a picture (``image_url``, here a data URL of the stored bytes: the service need
not reach our storage) as the ``input`` array, the key as a Bearer token. A result is
``flagged`` with the categories that made it so."""

from __future__ import annotations

import base64
from typing import Any

from shengtu.moderation import http
from shengtu.moderation.base import ModerationUnavailable, Verdict

SERVICE = "OpenAI 内容审核服务"
DEFAULT_BASE_URL = "https://api.openai.com"
DEFAULT_MODEL = "omni-moderation-latest"


def verdict_of(body: dict[str, Any]) -> Verdict:
    """The verdict of a moderation answer: flagged when any result is."""
    results = body.get("results")
    if not isinstance(results, list) or not results:
        raise ModerationUnavailable(f"{SERVICE}的答复没有 results")
    flagged = False
    labels: list[str] = []
    for result in results:
        if not isinstance(result, dict):
            raise ModerationUnavailable(f"{SERVICE}的答复无法解析")
        if result.get("flagged") is True:
            flagged = True
            categories = result.get("categories")
            if isinstance(categories, dict):
                labels += [str(name) for name, on in categories.items() if on is True]
    return Verdict(flagged, tuple(dict.fromkeys(labels)))


# A stored picture's type by its first bytes (it was sniffed whole when stored).
MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"))


def media_type(picture: bytes) -> str:
    if picture[:4] == b"RIFF" and picture[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in MAGIC if picture.startswith(magic)), "image/png")


def data_url(picture: bytes) -> str:
    return f"data:{media_type(picture)};base64,{base64.b64encode(picture).decode()}"


class OpenAIModerator:
    name = "openai"

    def __init__(
        self, base_url: str, api_key: str, *, model: str = DEFAULT_MODEL, timeout: float = 10.0
    ) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._key = api_key
        self.model = model
        self._http = http.client(timeout)

    async def _moderate(self, item: dict[str, Any]) -> Verdict:
        request = self._http.build_request(
            "POST",
            f"{self.base_url}/v1/moderations",
            json={"model": self.model, "input": [item]},
            headers={"Authorization": f"Bearer {self._key}"},
        )
        return verdict_of(await http.call(self._http, request, SERVICE))

    async def check_text(self, text: str) -> Verdict:
        return await self._moderate({"type": "text", "text": text})

    async def check_image(self, picture: bytes, url: str) -> Verdict:
        return await self._moderate({"type": "image_url", "image_url": {"url": data_url(picture)}})

    async def aclose(self) -> None:
        await self._http.aclose()
