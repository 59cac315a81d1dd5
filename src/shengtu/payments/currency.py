"""How many minor units make a currency's unit. Amounts are integers in minor units
everywhere (fen, cents, yen); a custom amount's points and every amount a person reads
need the currency's exponent.

The exponents are Stripe's (the one provider here that takes currencies other than CNY),
which are ISO 4217's but for ISK, which Stripe counts in hundredths, and MGA, which it
counts whole."""

from __future__ import annotations

import re
from decimal import Decimal

# Yuan as the Chinese providers write them: ASCII digits, at most two decimals, nothing else.
YUAN = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,2}))?")

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


def fen(text: str) -> int:
    """Yuan as 易支付, Alipay and WeChat Pay write them (``"10.00"``, ``"10"``, ``"10.5"``)
    in fen. ValueError for anything else: a sign, an exponent, a space, a third decimal,
    digits of another script, an absurd size. Exact, as money is."""
    found = YUAN.fullmatch(text)
    if found is None:
        raise ValueError(text)
    whole, cents = found.group(1), (found.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(cents)


def yuan(amount: int) -> str:
    """Fen as those providers take yuan: 1 → ``"0.01"``, 1000 → ``"10.00"``."""
    return f"{amount // 100}.{amount % 100:02d}"
