"""What both moderation doubles share: the markers that make them flag content or
misbehave, and the record of what they were shown.

A text is judged by what it says; a picture by what it carries: the sandbox upstream
writes each prompt into its picture (a PNG text chunk), so a prompt with
:data:`IMAGE_FLAG` in it makes a picture the image check flags, while the prompt itself
passes the text check (which looks for :data:`TEXT_FLAG`). Content with a ``500``
marker is answered with a server error, with a ``slow`` marker only after
``slow_seconds``; ``failing`` (set by a test) makes every check a 500.
"""

from __future__ import annotations

import asyncio
import io
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import httpx
from PIL import Image
from starlette.routing import BaseRoute

TEXT_FLAG = "[moderation:flag-text]"
IMAGE_FLAG = "[moderation:flag-image]"
TEXT_500 = "[moderation:500-text]"
IMAGE_500 = "[moderation:500-image]"
TEXT_SLOW = "[moderation:slow-text]"
IMAGE_SLOW = "[moderation:slow-image]"

Outcome = Literal["pass", "flag", "fail", "slow"]
MARKERS: dict[str, tuple[tuple[str, Outcome], ...]] = {
    "text": ((TEXT_500, "fail"), (TEXT_SLOW, "slow"), (TEXT_FLAG, "flag")),
    "image": ((IMAGE_500, "fail"), (IMAGE_SLOW, "slow"), (IMAGE_FLAG, "flag")),
}


@dataclass(frozen=True)
class Seen:
    """One check the double was asked for: what kind, of what (a text, or where the
    picture came from: its URL, or "data:" for bytes sent inline), and its outcome."""

    kind: Literal["text", "image"]
    subject: str
    outcome: Outcome


def picture_text(picture: bytes) -> str:
    """What a picture says in its metadata (a PNG's text chunks), and its raw bytes as
    far as they read as text."""
    said = picture.decode("utf-8", errors="ignore")
    try:
        with Image.open(io.BytesIO(picture)) as img:
            said += " ".join(str(v) for v in img.info.values() if isinstance(v, str))
    except (OSError, ValueError, Image.DecompressionBombError):
        pass
    return said


class ModerationDouble(ABC):
    kind: ClassVar[str]  # the provider's name (SHENGTU_MODERATION_PROVIDER)
    prefix: ClassVar[str]  # where its routes are mounted

    def __init__(self, *, slow_seconds: float = 3.0) -> None:
        self.slow_seconds = slow_seconds
        self.failing = False
        self.seen: list[Seen] = []
        self.refused_keys = 0
        self._http: httpx.AsyncClient | None = None

    @abstractmethod
    def routes(self) -> list[BaseRoute]: ...

    @abstractmethod
    def settings(self, base_url: str) -> dict[str, str]:
        """The SHENGTU_MODERATION_* settings of a platform that uses this double at
        ``base_url`` (with its key)."""

    def outcome(self, kind: Literal["text", "image"], content: str) -> Outcome:
        if self.failing:
            return "fail"
        return next((o for marker, o in MARKERS[kind] if marker in content), "pass")

    async def judge(self, kind: Literal["text", "image"], subject: str, content: str) -> Outcome:
        """The outcome of a check, recorded; a slow one after its wait."""
        outcome = self.outcome(kind, content)
        self.seen.append(Seen(kind, subject, outcome))
        if outcome == "slow":
            await asyncio.sleep(self.slow_seconds)
        return outcome

    async def fetch(self, url: str) -> bytes | None:
        """A picture the service is given by URL, fetched as the service would."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        try:
            answer = await self._http.get(url)
        except httpx.HTTPError:
            return None
        return answer.content if answer.status_code == 200 else None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
