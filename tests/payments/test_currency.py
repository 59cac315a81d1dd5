"""Amounts: minor units per currency, and yuan read exactly as the Chinese providers write
them (易支付, Alipay and WeChat Pay all read theirs with one parser)."""

from __future__ import annotations

import pytest

from shengtu.payments.currency import fen, major, minor_digits, per_unit, yuan


@pytest.mark.parametrize(
    ("text", "cents"),
    [("10.00", 1000), ("10", 1000), ("0.5", 50), ("0.01", 1), ("19.9", 1990), ("0", 0)],
)
def test_yuan_are_read_in_fen(text: str, cents: int) -> None:
    assert fen(text) == cents


@pytest.mark.parametrize(
    "text",
    [
        "", "abc", "1.001", "-1.00", "-0", "+1", "1.", ".5", "1e3", "1E3", "NaN", "Infinity",
        "1e400", " 1.00", "1.00 ", "\t1.00\n", "1_000", "1,000.00", "１２", "٣", "1" * 13,
    ],
)  # fmt: skip
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        fen(text)


def test_fen_are_written_as_yuan_with_two_decimals() -> None:
    assert [yuan(n) for n in (0, 1, 10, 50, 1999, 123456)] == [
        "0.00", "0.01", "0.10", "0.50", "19.99", "1234.56",
    ]  # fmt: skip
    assert all(fen(yuan(n)) == n for n in range(0, 100_000, 37))


@pytest.mark.parametrize(
    ("currency", "digits", "shown"),
    [("CNY", 2, "12.34"), ("usd", 2, "12.34"), ("JPY", 0, "1234"), ("KWD", 3, "1.234")],
)
def test_each_currency_has_its_own_minor_unit(currency: str, digits: int, shown: str) -> None:
    assert minor_digits(currency) == digits
    assert per_unit(currency) == 10**digits
    assert major(1234, currency) == shown
