"""What a request costs a user: the model's price per picture for the values the request
chose (its price rule over the base price in the catalog, :mod:`shengtu.pricing.rules`) ×
the multiplier of the user's price group, rounded up to a whole point (the operator never
sells a fraction of a point below its price), × the pictures asked. The one place a price
is worked out: the charge, the refusals before it, a quote and an API key's quota all take
it from here.

Read at the moment it is asked, never from a cache: an admin's change of a price, a rule or
a multiplier applies to every submit after it, in every process. The statements are built
once, with ``bindparam``s (``shengtu.db`` compiles each once)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from sqlalchemy import Integer, String, and_, bindparam, select

from shengtu.db import Conn, Database, run
from shengtu.errors import BadRequest
from shengtu.models.accounts import User
from shengtu.models.catalog import PointsConfig
from shengtu.models.groups import UserGroup
from shengtu.models.points import PointsAccount
from shengtu.pricing.parameters import Chosen, Parameters
from shengtu.pricing.rules import PriceRule


@dataclass(frozen=True, slots=True)
class PriceQuery:
    """What is priced: ``count`` pictures of ``model_name`` for ``user_id``, with the
    values the request chose (a value for each of the model's choices, the extra fields
    and the number of reference images: :class:`Chosen`)."""

    user_id: int
    model_name: str
    count: int = 1
    chosen: Chosen = field(default_factory=Chosen)


@dataclass(frozen=True, slots=True)
class Price:
    """A request's price: ``each`` picture's and the ``total`` the user is charged for
    ``count`` of them; ``basis`` is what the price was worked out from (recorded on the
    task: a refund returns what was charged, whatever changed since)."""

    each: int
    count: int = 1
    basis: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.each * self.count


@dataclass(frozen=True, slots=True)
class Quote:
    """A user's balance beside a price, read together: for a refusal before the charge."""

    balance: int
    price: Price


def group_price(points: int | Decimal, multiplier: Decimal | float | None) -> int:
    """What a user of a group with ``multiplier`` pays for a picture listed at ``points``:
    the product rounded up (ceil) to a whole point. A user whose group was removed while
    they were in it pays the list price."""
    m = Decimal(1) if multiplier is None else Decimal(str(multiplier))
    return int((Decimal(points) * m).to_integral_value(rounding=ROUND_CEILING))


_USER = bindparam("user_id", type_=Integer)
_MODEL = bindparam("model_name", type_=String)
# The user's group multiplier (NULL: no such group), as a column.
_MULTIPLIER = (
    select(UserGroup.multiplier)
    .join(User, User.group_name == UserGroup.name)
    .where(User.id == _USER)
    .scalar_subquery()
)
_PRICED = (PointsConfig.points_cost, PointsConfig.price_rule, PointsConfig.params)
# The enabled model's base, rule and parameters (no row: gone or disabled) beside the
# user's multiplier.
_PRICE_NOW = select(*_PRICED, _MULTIPLIER).where(
    PointsConfig.model_name == _MODEL, PointsConfig.enabled.is_(True)
)
# The same beside the balance (the model's columns NULL: gone or disabled).
_BALANCE_AND_PRICE = (
    select(PointsAccount.balance, *_PRICED, _MULTIPLIER)
    .select_from(PointsAccount)
    .outerjoin(
        PointsConfig,
        and_(PointsConfig.model_name == _MODEL, PointsConfig.enabled.is_(True)),
    )
    .where(PointsAccount.user_id == _USER)
)
_EDIT_TYPES = ("image_to_image", "both")
_BALANCE_AND_MULTIPLIER = select(PointsAccount.balance, _MULTIPLIER).where(
    PointsAccount.user_id == _USER
)
_EDIT_MODELS = select(*_PRICED).where(
    PointsConfig.enabled.is_(True), PointsConfig.task_type.in_(_EDIT_TYPES)
)


def gone(model_name: str) -> BadRequest:
    return BadRequest(f"参数错误:模型 {model_name[:64]} 不存在或已停用")


def _price(query: PriceQuery, row: Sequence[Any] | None) -> Price:
    """The price of ``query`` from the model's (base, rule, parameters, multiplier)."""
    if row is None or row[0] is None:
        raise gone(query.model_name)
    base, raw_rule, raw_params, multiplier = row
    chosen = query.chosen
    # The values are checked against the model as it is now: the catalog a request was
    # checked against may be seconds old.
    Parameters.parse(raw_params).choose(
        query.model_name,
        {**chosen.values, **chosen.extra},
        chosen.n,
        chosen.references,
    )
    rule = PriceRule.parse(raw_rule)
    listed = rule.each(Decimal(int(base)), chosen.values, chosen.references)
    each = group_price(listed, multiplier)
    basis = {
        "base": int(base),
        "rule": rule.to_json(),
        "multiplier": str(Decimal(1) if multiplier is None else Decimal(str(multiplier))),
        "listed": str(listed),
        "each": each,
    }
    return Price(each, query.count, basis)


def _params(query: PriceQuery) -> dict[str, Any]:
    return {"model_name": query.model_name, "user_id": query.user_id}


async def price_now(session: Conn, query: PriceQuery) -> Price:
    """The price to charge, read in the charge's transaction. 400 when the model is gone
    or disabled, or no longer offers a value the request chose."""
    return _price(query, (await run(session, _PRICE_NOW, _params(query))).first())


async def quote(db: Database, query: PriceQuery) -> Quote | None:
    """The balance and today's price in one read, outside any transaction (None: the
    user has no points account). 400 when the model is gone or disabled."""
    row = await db.first(_BALANCE_AND_PRICE, _params(query))
    if row is None:
        return None
    return Quote(row[0], _price(query, row[1:]))


def cheapest_each(base: int, raw_rule: Any, raw_params: Any, references: int = 1) -> Decimal:
    """The least one picture of a model can list at, over every value it offers."""
    params = Parameters.parse(raw_params)
    rule = PriceRule.parse(raw_rule)
    combos: list[dict[str, str]] = [{}]
    for name, choice in params.choices.items():
        combos = [{**c, name: v} for c in combos for v in choice.values]
    return min(rule.each(Decimal(base), c, references) for c in combos)


async def cheapest_edit_quote(db: Database, user_id: int) -> Quote | None:
    """The balance and the least one picture of an enabled image-to-image model can cost
    the user (None: no points account, or no such model enabled)."""
    account = await db.first(_BALANCE_AND_MULTIPLIER, {"user_id": user_id})
    if account is None:
        return None
    balance, multiplier = account
    async with db.read() as session:
        rows = (await session.execute(_EDIT_MODELS)).all()
    if not rows:
        return None
    least = min(cheapest_each(int(base), rule, params) for base, rule, params in rows)
    return Quote(balance, Price(group_price(least, multiplier)))
