from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shengtu.accounts.schemas import ApiKeyOut
from shengtu.api.inputs import RequestBody
from shengtu.points.schemas import LedgerOut
from shengtu.tasks.schemas import TaskDetail


class AdminUserOut(BaseModel):
    userId: int
    username: str
    role: str
    group: str
    active: bool
    balance: int
    createTime: str


class AdminUserDetail(AdminUserOut):
    taskCounts: dict[str, int]
    recentTasks: list[TaskDetail]
    apiKeys: list[ApiKeyOut]
    recentLedger: list[LedgerOut]


class AdminUserChange(RequestBody):
    active: bool | None = None
    role: Literal["user", "admin"] | None = None
    group: str | None = Field(default=None, min_length=1, max_length=32)


class PasswordReset(RequestBody):
    password: str = Field(min_length=1, max_length=256)


class PointsChange(RequestBody):
    """Grant (positive) or take back (negative; never below zero)."""

    amount: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    note: str | None = Field(default=None, max_length=255)


class UserFilter(BaseModel):
    q: str | None = None
    role: str | None = None
    group: str | None = None
    active: bool | None = None
    createdFrom: datetime | None = None
    createdTo: datetime | None = None
