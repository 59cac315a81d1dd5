"""The answer every endpoint gives: ``{"code", "message", "data"}``."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    code: int = 200
    message: str = "success"
    data: T


class ErrorEnvelope(BaseModel):
    code: int
    message: str
    # Mostly null; a refused parameter names itself and the values offered
    # (``{"param", "offered"}``), a refused model definition the part at fault (``{"field"}``).
    data: dict[str, Any] | None = None


ERROR_CODES = {
    400: "参数错误",
    401: "未登录或Token过期",
    402: "积分不足",
    403: "无权访问",
    404: "资源不存在",
    405: "请求方法不被允许",
    409: "资源冲突",
    410: "资源已过期删除",
    413: "请求体过大",
    422: "幂等键已用于参数不同的请求",
    429: "请求过于频繁",
    500: "服务器错误",
    503: "服务暂时不可用",
}
# Every route may answer any of these, always in the envelope: the OpenAPI document says so.
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorEnvelope, "description": text} for code, text in ERROR_CODES.items()
}


def ok(data: T) -> Envelope[T]:
    return Envelope[T](data=data)


class Page(BaseModel, Generic[T]):
    """A page in the spec's platform shape (MyBatis-Plus ``IPage``)."""

    records: list[T]
    total: int
    size: int
    current: int
    pages: int

    @classmethod
    def of(cls, records: list[T], total: int, page: int, size: int) -> Page[T]:
        return cls(records=records, total=total, size=size, current=page, pages=-(-total // size))


# A page's number and size, as every paged route takes them.
PageNo = Annotated[int, Query(ge=1, le=1_000_000)]
PageSize = Annotated[int, Query(ge=1, le=100)]
