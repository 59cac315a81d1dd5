from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shengtu.gates import Gate
from shengtu.storage.images import ImageInfo

# A picture checked (and perhaps re-encoded): what to store, and what it is.
Check = Callable[[bytes], tuple[bytes, ImageInfo]]


@dataclass(frozen=True)
class Stored:
    key: str
    info: ImageInfo
    size: int


class Storage(Protocol):
    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def locate(self, key: str) -> Path | str | None:
        """Where a client gets ``key``: a local file, a URL to redirect to, or nowhere."""
        ...

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def put_checked(
        self, data: bytes, check: Check, key_for: Callable[[ImageInfo], str], gate: Gate
    ) -> Stored:
        """``data`` checked in one of ``gate``'s slots (NotAnImage when it is no picture),
        then stored under ``key_for`` of what it is."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None: ...

    def url(self, key: str) -> str: ...

    def key_from_url(self, url: str) -> str | None:
        """The key of one of our own URLs, else None."""
        ...
