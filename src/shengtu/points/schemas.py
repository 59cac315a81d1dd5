from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shengtu.api.inputs import RequestBody
from shengtu.models.points import PointsLedger
from shengtu.timefmt import fmt


class BalanceOut(BaseModel):
    userId: int
    balance: int
    expireTime: str | None


def balance_out(user_id: int, balance: int, expire_time: datetime | None, tz: str) -> BalanceOut:
    return BalanceOut(userId=user_id, balance=balance, expireTime=fmt(expire_time, tz))


class LedgerOut(BaseModel):
    id: int
    delta: int
    balanceAfter: int
    kind: str
    taskNo: str | None
    note: str | None
    createTime: str


def ledger_out(row: PointsLedger, tz: str) -> LedgerOut:
    return LedgerOut(
        id=row.id,
        delta=row.delta,
        balanceAfter=row.balance_after,
        kind=row.kind,
        taskNo=row.task_no,
        note=row.note,
        createTime=fmt(row.created_at, tz) or "",
    )


class GrantRequest(RequestBody):
    username: str = Field(min_length=1, max_length=64)
    amount: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    note: str | None = Field(default=None, max_length=255)
