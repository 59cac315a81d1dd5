"""Domain errors. Each carries the envelope code the API answers with (the HTTP status too)."""

from __future__ import annotations

from typing import Any


class ShengtuError(Exception):
    code = 500
    default_message = "服务器错误"
    headers: dict[str, str] | None = None

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        self.message = message or self.default_message
        self.data = data
        super().__init__(self.message)


class BadRequest(ShengtuError):
    code = 400
    default_message = "参数错误"


class Unauthorized(ShengtuError):
    code = 401
    default_message = "未登录或Token过期"


class InsufficientPoints(ShengtuError):
    code = 402
    default_message = "积分不足"


class Forbidden(ShengtuError):
    code = 403
    default_message = "无权访问"


class NotFound(ShengtuError):
    code = 404
    default_message = "资源不存在"


class Conflict(ShengtuError):
    code = 409
    default_message = "资源冲突"


class Gone(ShengtuError):
    code = 410
    default_message = "资源已过期删除"


class TooManyRequests(ShengtuError):
    code = 429
    default_message = "请求过于频繁,请稍后再试"

    def __init__(self, message: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        if retry_after is not None:
            self.headers = {"Retry-After": str(retry_after)}


class ServiceUnavailable(ShengtuError):
    code = 503
    default_message = "服务暂时不可用,请稍后再试"
