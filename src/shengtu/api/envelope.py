"""The answer every endpoint gives: ``{"code", "message", "data"}``."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    code: int = 200
    message: str = "success"
    data: T


class ErrorEnvelope(BaseModel):
    code: int
    message: str
    data: None = None


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
