from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shengtu.api.inputs import RequestBody


class RedeemRequest(RequestBody):
    code: str = Field(min_length=1, max_length=80)


class RedeemOut(BaseModel):
    points: int
    balance: int | None


CodeState = Literal["unused", "used", "expired", "disabled"]


class CodeBatchCreate(RequestBody):
    count: int = Field(ge=1, le=10_000)
    points: int = Field(ge=0, le=1_000_000_000)
    # Local time (the site's timezone) unless it carries an offset.
    expireTime: datetime | None = None
    note: str | None = Field(default=None, max_length=255)


class CodeOut(BaseModel):
    id: int
    code: str
    batch: str
    points: int
    note: str | None
    state: CodeState
    expireTime: str | None
    usedBy: int | None
    usedTime: str | None
    createTime: str


class CodeBatchOut(BaseModel):
    batch: str
    count: int
    points: int
    codes: list[str]


class CodeDisable(RequestBody):
    """Disable the codes with these ids, or every unused code of a batch."""

    ids: list[int] | None = Field(default=None, max_length=10_000)
    batch: str | None = Field(default=None, min_length=1, max_length=64)


class CodesDisabled(BaseModel):
    disabled: int
