"""How many minor units make a currency's unit. Amounts are integers in minor units
everywhere (fen, cents, yen); a custom amount's points and every amount a person reads
need the currency's exponent.

The exponents are Stripe's (the one provider here that takes currencies other than CNY),
which are ISO 4217's but for ISK, which Stripe counts in hundredths, and MGA, which it
counts whole."""

from __future__ import annotations

from decimal import Decimal

ZERO_DECIMAL = frozenset(
    {
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
        "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    }
)  # fmt: skip
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def minor_digits(currency: str) -> int:
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def per_unit(currency: str) -> int:
    """Minor units in one unit: 100 for CNY, 1 for JPY, 1000 for KWD."""
    return int(10 ** minor_digits(currency))


def major(amount: int, currency: str) -> str:
    """``amount`` minor units as a person writes it: ``12.34``, ``1200``, ``1.500``."""
    digits = minor_digits(currency)
    return f"{Decimal(amount).scaleb(-digits):.{digits}f}"
