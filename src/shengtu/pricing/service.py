"""What a request costs a user: the model's points in the catalog × the multiplier of the
user's price group, rounded up to a whole point (the operator never sells a fraction of a
point below its price). The one place a price is worked out: the charge, the refusals
before it and an API key's quota all take it from here.

Read at the moment it is asked, never from a cache: an admin's change of a price or a
multiplier applies to every submit after it, in every process. The statements are built
once, with ``bindparam``s (``shengtu.db`` compiles each once)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from sqlalchemy import Integer, String, bindparam, func, select

from shengtu.db import Conn, Database, run
from shengtu.errors import BadRequest
from shengtu.models.accounts import User
from shengtu.models.catalog import PointsConfig
from shengtu.models.groups import UserGroup
from shengtu.models.points import PointsAccount


@dataclass(frozen=True, slots=True)
class PriceQuery:
    """What is priced: ``count`` pictures of ``model_name`` for ``user_id``. (The model's
    parameters join it when a choice of them has a price of its own.)"""

    user_id: int
    model_name: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class Price:
    """A request's price: ``each`` picture's (what its task records and a refund returns)
    and the ``total`` the user is charged for ``count`` of them."""

    each: int
    count: int = 1

    @property
    def total(self) -> int:
        return self.each * self.count


@dataclass(frozen=True, slots=True)
class Quote:
    """A user's balance beside a price, read together: for a refusal before the charge."""

    balance: int
    price: Price


def group_price(points: int, multiplier: Decimal | float | None) -> int:
    """What a user of a group with ``multiplier`` pays for a model of ``points``: the
    product rounded up (ceil) to a whole point. A user whose group was removed while they
    were in it pays the list price."""
    m = Decimal(1) if multiplier is None else Decimal(str(multiplier))
    return int((Decimal(points) * m).to_integral_value(rounding=ROUND_CEILING))


_USER = bindparam("user_id", type_=Integer)
# The enabled model's points (NULL: gone or disabled) and the user's group multiplier
# (NULL: no such group), as columns.
_LIST_PRICE = (
    select(PointsConfig.points_cost)
    .where(
        PointsConfig.model_name == bindparam("model_name", type_=String),
        PointsConfig.enabled.is_(True),
    )
    .scalar_subquery()
)
_MULTIPLIER = (
    select(UserGroup.multiplier)
    .join(User, User.group_name == UserGroup.name)
    .where(User.id == _USER)
    .scalar_subquery()
)
_PRICE_NOW = select(_LIST_PRICE, _MULTIPLIER)
_BALANCE_AND_PRICE = select(PointsAccount.balance, _LIST_PRICE, _MULTIPLIER).where(
    PointsAccount.user_id == _USER
)
# The balance, the multiplier, and the cheapest enabled image-to-image model's points
# (NULL: none).
_BALANCE_AND_CHEAPEST_EDIT = select(
    PointsAccount.balance,
    _MULTIPLIER,
    select(func.min(PointsConfig.points_cost))
    .where(PointsConfig.enabled.is_(True), PointsConfig.task_type == "image_to_image")
    .scalar_subquery(),
).where(PointsAccount.user_id == _USER)


def _price(query: PriceQuery, points: int | None, multiplier: Any) -> Price:
    if points is None:
        raise BadRequest(f"参数错误:模型 {query.model_name[:64]} 不存在或已停用")
    return Price(group_price(int(points), multiplier), query.count)


def _params(query: PriceQuery) -> dict[str, Any]:
    return {"model_name": query.model_name, "user_id": query.user_id}


async def price_now(session: Conn, query: PriceQuery) -> Price:
    """The price to charge, read in the charge's transaction. 400 when the model is gone
    or disabled."""
    points, multiplier = (await run(session, _PRICE_NOW, _params(query))).rows[0]
    return _price(query, points, multiplier)


async def quote(db: Database, query: PriceQuery) -> Quote | None:
    """The balance and today's price in one read, outside any transaction (None: the
    user has no points account). 400 when the model is gone or disabled."""
    row = await db.first(_BALANCE_AND_PRICE, _params(query))
    if row is None:
        return None
    balance, points, multiplier = row
    return Quote(balance, _price(query, points, multiplier))


async def cheapest_edit_quote(db: Database, user_id: int) -> Quote | None:
    """The balance and the price of one picture of the user's cheapest image-to-image
    model, in one read (None: no points account, or no such model enabled)."""
    row = await db.first(_BALANCE_AND_CHEAPEST_EDIT, {"user_id": user_id})
    if row is None or row[2] is None:
        return None
    balance, multiplier, points = row
    return Quote(balance, Price(group_price(int(points), multiplier)))
