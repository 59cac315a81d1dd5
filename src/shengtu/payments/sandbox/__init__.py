"""The payment providers' doubles, by kind (payments.providers.PROVIDERS' kinds): each a
real HTTP server's routes that sign and verify as its provider does."""

from __future__ import annotations

from shengtu.payments.sandbox.common import PaymentDouble
from shengtu.payments.sandbox.epay import EpayDouble

DOUBLES: dict[str, type[PaymentDouble]] = {
    "epay": EpayDouble,
}
