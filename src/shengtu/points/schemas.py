from __future__ import annotations

from pydantic import BaseModel, Field

from shengtu.api.inputs import RequestBody


class BalanceOut(BaseModel):
    userId: int
    balance: int
    expireTime: str | None


class LedgerOut(BaseModel):
    id: int
    delta: int
    balanceAfter: int
    kind: str
    taskNo: str | None
    note: str | None
    createTime: str


class GrantRequest(RequestBody):
    username: str = Field(min_length=1, max_length=64)
    amount: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    note: str | None = Field(default=None, max_length=255)
