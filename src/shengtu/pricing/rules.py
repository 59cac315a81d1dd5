"""A price rule: how a model's price per picture follows the values a request chose. Pure:
the catalog keeps a rule as JSON (``points_config.price_rule``), a task records the rule
it was charged by, and a channel's cost per picture follows a rule of the same shape
(``channel_model.cost_rule``).

The stored shape (the API's ``priceRule``)::

    {"choices": {"size": {"1024x1536": {"times": "1.5"}},
                 "quality": {"low": {"points": 10}, "high": {"points": 160}}},
     "perReference": 5}

One picture costs, before the user's group multiplier::

    (the fixed price of a chosen value, else the base) × every chosen value's ``times``
    + every chosen value's ``plus`` + ``perReference`` × the number of reference images

Only one parameter may give fixed prices (``points``): two would leave the price of their
combination unsaid. A value the rule does not name changes nothing. The user pays that,
times the group's multiplier, rounded up once to a whole point (:mod:`shengtu.pricing.service`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from shengtu.pricing.parameters import CHOICE_NAMES, InvalidParameters

EFFECTS = ("points", "times", "plus")
MAX_POINTS = 1_000_000


@dataclass(frozen=True, slots=True)
class Effect:
    points: Decimal | None = None
    times: Decimal = Decimal(1)
    plus: Decimal = Decimal(0)

    def to_json(self) -> dict[str, Any]:
        if self.points is not None:
            return {"points": _number(self.points)}
        if self.times != 1:
            return {"times": str(self.times)}
        return {"plus": _number(self.plus)}


@dataclass(frozen=True, slots=True)
class PriceRule:
    choices: Mapping[str, Mapping[str, Effect]] = field(default_factory=dict)
    per_reference: Decimal = Decimal(0)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> PriceRule:
        """The stored JSON as a rule; InvalidParameters naming the first fault."""
        if raw is None:
            return FLAT
        if not isinstance(raw, Mapping):
            raise InvalidParameters("价格规则必须是 JSON 对象")
        unknown = set(raw) - {"choices", "perReference"}
        if unknown:
            raise InvalidParameters(f"价格规则中有未知字段:{', '.join(sorted(unknown))}")
        choices: dict[str, dict[str, Effect]] = {}
        fixed_by: list[str] = []
        raw_choices = raw.get("choices") or {}
        if not isinstance(raw_choices, Mapping):
            raise InvalidParameters("价格规则的 choices 必须是 JSON 对象")
        for name, by_value in raw_choices.items():
            if name not in CHOICE_NAMES:
                raise InvalidParameters(f"价格规则中的参数 {str(name)[:32]} 不是可选参数")
            if not isinstance(by_value, Mapping):
                raise InvalidParameters(f"价格规则中参数 {name} 的定义必须是 JSON 对象")
            choices[name] = {str(v): _effect(name, str(v), e) for v, e in by_value.items()}
            if any(e.points is not None for e in choices[name].values()):
                fixed_by.append(name)
        if len(fixed_by) > 1:
            raise InvalidParameters(
                f"只能有一个参数给出固定价格(points),现在有:{', '.join(fixed_by)}"
            )
        per_ref = _decimal(raw.get("perReference", 0), "perReference", allow_zero=True)
        return cls(choices, per_ref)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.choices:
            out["choices"] = {
                n: {v: e.to_json() for v, e in by.items()} for n, by in self.choices.items()
            }
        if self.per_reference:
            out["perReference"] = _number(self.per_reference)
        return out

    def check_against(self, offered: Mapping[str, tuple[str, ...]]) -> None:
        """Refuse a rule that prices a parameter or value the model does not offer."""
        for name, by_value in self.choices.items():
            values = offered.get(name)
            if values is None:
                raise InvalidParameters(f"价格规则为模型没有的参数 {name} 定价")
            stray = sorted(set(by_value) - set(values))
            if stray:
                raise InvalidParameters(
                    f"价格规则为参数 {name} 不提供的取值定价:{', '.join(stray)}"
                )

    def each(self, base: Decimal, values: Mapping[str, str], references: int = 0) -> Decimal:
        """One picture's price (or cost) for the chosen ``values``, before any multiplier."""
        price = base
        times = Decimal(1)
        plus = Decimal(0)
        for name, value in values.items():
            effect = self.choices.get(name, {}).get(value)
            if effect is None:
                continue
            if effect.points is not None:
                price = effect.points
            times *= effect.times
            plus += effect.plus
        return price * times + plus + self.per_reference * references


FLAT = PriceRule()


def _number(value: Decimal) -> int | str:
    return int(value) if value == value.to_integral_value() else str(value)


def _decimal(value: Any, where: str, *, allow_zero: bool) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidParameters(f"{where} 必须是数字")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise InvalidParameters(f"{where} 必须是数字") from exc
    if not number.is_finite() or number < 0 or (number == 0 and not allow_zero):
        raise InvalidParameters(f"{where} 必须是{'非负' if allow_zero else '正'}数")
    if number > MAX_POINTS or number.as_tuple().exponent < -4:  # type: ignore[operator]
        raise InvalidParameters(f"{where} 超出范围(至多 {MAX_POINTS},最多 4 位小数)")
    return number


def _effect(name: str, value: str, raw: Any) -> Effect:
    where = f"价格规则 {name}={value[:32]}"
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in EFFECTS:
        raise InvalidParameters(f"{where} 必须是 {{points|times|plus: 数值}} 之一")
    kind, number = next(iter(raw.items()))
    if kind == "points":
        return Effect(points=_decimal(number, where, allow_zero=True))
    if kind == "times":
        return Effect(times=_decimal(number, where, allow_zero=False))
    return Effect(plus=_decimal(number, where, allow_zero=True))
