"""What the rest of Shengtu needs from a moderation service, whatever its protocol: a
verdict on a text and on a picture, or the word that it could not give one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Verdict:
    """A service's answer: whether it refuses the content, and its own names for why
    (its categories or labels, never the content itself)."""

    flagged: bool
    labels: tuple[str, ...] = ()


PASSED = Verdict(False)


class ModerationUnavailable(Exception):
    """No verdict: the service is down, slow, refused our key or answered garbage. What
    follows is the operator's SHENGTU_MODERATION_FAIL (open: let it through; closed:
    refuse it). The message is for logs and the operator, in Chinese, without the key."""

    def __init__(self, message: str, *, key_rejected: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.key_rejected = key_rejected


class Moderator(Protocol):
    """One moderation protocol, on one account. Knows nothing of tasks or the database."""

    name: str

    async def check_text(self, text: str) -> Verdict: ...

    async def check_image(self, picture: bytes, url: str) -> Verdict:
        """``picture`` as stored, and ``url``, where it is served (for a service that
        fetches the picture itself rather than taking its bytes)."""
        ...

    async def aclose(self) -> None: ...
