"""The credential a request carries: a Bearer token or an ``X-API-Key``."""

from __future__ import annotations

from collections.abc import Iterable


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer …`` value; None for any other."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def credential_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """A Bearer token from ``Authorization``, else an ``X-API-Key`` (the first of each)."""
    auth = key = None
    for name, value in headers:
        if name == b"authorization" and auth is None:
            auth = value.decode("latin-1")
        elif name == b"x-api-key" and key is None:
            key = value.decode("latin-1")
    return bearer_token(auth or "") or (key or "").strip() or None
