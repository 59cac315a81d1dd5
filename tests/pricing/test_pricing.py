"""A user's price: the model's points × the group's multiplier, rounded up to a whole point."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shengtu.pricing.service import Price, group_price


@pytest.mark.parametrize(
    ("points", "multiplier", "price"),
    [
        (30, Decimal("1.5"), 45),
        (30, Decimal("0.3333"), 10),  # 9.999: never a fraction of a point below the price
        (30, Decimal("0"), 0),
        (1, Decimal("0.0001"), 1),
        (40, Decimal("100"), 4000),
        (30, None, 30),  # the user's group was removed: the list price
        # As the database hands it back (a float on some drivers): by its decimal digits,
        # not its binary value (30 × 0.1 as a float is a hair above 3).
        (30, 0.1, 3),
        (10, 1.1, 11),
    ],
)
def test_group_price_rounds_up_to_a_whole_point(
    points: int, multiplier: Decimal | float | None, price: int
) -> None:
    assert group_price(points, multiplier) == price


def test_a_request_costs_its_count_of_each() -> None:
    assert Price(10, 4).total == 40 and Price(10).total == 10
