"""The one HTTP call both protocols make, and how its failures read: every way of not
getting a verdict is a :class:`ModerationUnavailable`, with the key never in its words."""

from __future__ import annotations

from typing import Any

import httpx

from shengtu.moderation.base import ModerationUnavailable

# Statuses that mean the key (or the signature made with it) was refused.
KEY_REFUSED = (401, 403)


def client(timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        headers={"User-Agent": "Shengtu/0.1"},
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
    )


async def call(http: httpx.AsyncClient, request: httpx.Request, service: str) -> Any:
    """The JSON body of ``request``'s 2xx answer; ModerationUnavailable otherwise."""
    try:
        answer = await http.send(request)
    except httpx.TimeoutException as exc:
        raise ModerationUnavailable(f"{service}超时未答复") from exc
    except httpx.HTTPError as exc:
        raise ModerationUnavailable(f"无法连接{service}:{type(exc).__name__}") from exc
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code in KEY_REFUSED or (
        400 <= answer.status_code < 500 and _says_key_refused(body)
    ):
        raise ModerationUnavailable(
            f"{service}拒绝了密钥(HTTP {answer.status_code} {_code_of(body)})", key_rejected=True
        )
    if answer.status_code >= 300:
        raise ModerationUnavailable(
            f"{service}出错(HTTP {answer.status_code} {_code_of(body)})".rstrip()
        )
    if not isinstance(body, dict):
        raise ModerationUnavailable(f"{service}返回了无法解析的内容")
    return body


def _code_of(body: Any) -> str:
    """The error's code as the service names it (OpenAI's error.code, Aliyun's Code)."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("code") or error.get("type") or "")[:60]
    return str(body.get("Code") or "")[:60]


def _says_key_refused(body: Any) -> bool:
    # Aliyun answers an unknown AccessKey ID with a 404 (InvalidAccessKeyId.NotFound), a
    # wrong signature with a 400 (SignatureDoesNotMatch).
    code = _code_of(body)
    return "AccessKey" in code or "Signature" in code
