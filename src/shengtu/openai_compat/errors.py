"""Failures in OpenAI's shape, with the statuses its SDKs act on.

``{"error": {"message", "type", "param", "code"}}``. The SDKs retry 408, 409, 429 and 5xx
on their own; an answer that says ``x-should-retry: false`` stops them, and every failure
here says so unless a retry is safe and useful (a rate limit, a database that is back in a
moment): a blind retry of an image request is another charge.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

PREFIX = "/v1/"

_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", "idempotency_key_reused"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("server_error", "generation_failed"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "generation_pending"),
}
RETRYABLE = frozenset({429, 503})


def openai_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    # OpenAI answers an exhausted balance with 429 insufficient_quota: its SDKs know it.
    http_status = 429 if status == 402 else status
    kind, default_code = _TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    retry = status in RETRYABLE
    return JSONResponse(
        {
            "error": {
                "message": message,
                "type": kind,
                "param": param,
                "code": code or default_code,
                **(extra or {}),
            }
        },
        status_code=http_status,
        headers={**(headers or {}), "x-should-retry": "true" if retry else "false"},
    )
