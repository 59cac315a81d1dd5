from __future__ import annotations

from pydantic import BaseModel, Field

from shengtu.api.inputs import RequestBody


class RedeemRequest(RequestBody):
    code: str = Field(min_length=1, max_length=80)


class RedeemOut(BaseModel):
    points: int
    balance: int | None
