"""An API key's points quota, kept in the charge and refund transactions: ``spent_points``
is what the key's tasks were charged net of refunds, and never passes ``quota_points``."""

from __future__ import annotations

from sqlalchemy import Integer, bindparam, or_, update

from shengtu.db import Conn, run
from shengtu.errors import Forbidden
from shengtu.models.accounts import ApiKey

_AMOUNT = bindparam("amount", type_=Integer)
_GIVE_BACK = (
    update(ApiKey)
    .where(ApiKey.id == bindparam("key_id"))
    .values(spent_points=ApiKey.spent_points - _AMOUNT)
)
_SPEND = (
    update(ApiKey)
    .where(
        ApiKey.id == bindparam("key_id"),
        or_(
            ApiKey.quota_points.is_(None),
            ApiKey.spent_points + _AMOUNT <= ApiKey.quota_points,
        ),
    )
    .values(spent_points=ApiKey.spent_points + _AMOUNT)
)


async def spend(session: Conn, key_id: int, amount: int) -> None:
    """Count ``amount`` against the key, or refuse (403) if its quota cannot cover it.

    One conditional UPDATE: of racing submits on one key, each sees the others' spending,
    so together they never pass the quota."""
    if (await run(session, _SPEND, {"key_id": key_id, "amount": amount})).rowcount != 1:
        raise Forbidden(
            f"该 API Key 的积分额度不足:本次需要 {amount} 积分,请调高额度或换用其他 Key"
        )


async def give_back(session: Conn, key_id: int, amount: int) -> None:
    """A refunded task's points count against its key no more."""
    await run(session, _GIVE_BACK, {"key_id": key_id, "amount": amount})
