"""The payment providers, by kind: one module each, and this one table the rest of the
code reads (adding a provider touches its module, its double and one line here)."""

from __future__ import annotations

from shengtu.payments.base import PaymentProvider
from shengtu.payments.providers.epay import EpayProvider

PROVIDERS: dict[str, type[PaymentProvider]] = {
    "epay": EpayProvider,
}
