from __future__ import annotations

from typing import Protocol


class Storage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None: ...

    def url(self, key: str) -> str: ...

    def key_from_url(self, url: str) -> str | None:
        """The key of one of our own URLs, else None."""
        ...
