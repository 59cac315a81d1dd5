"""The payment providers the scenarios run against, one line each: how to make the
provider's double (with its retries shortened) and what its protocol makes of an old
notify replayed. A provider's double that lands adds its line here, and every scenario
of tests/payments runs against it too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shengtu.payments.sandbox.alipay import AlipayDouble
from shengtu.payments.sandbox.common import PaymentDouble
from shengtu.payments.sandbox.epay import EpayDouble
from shengtu.payments.sandbox.stripe import StripeDouble
from shengtu.payments.sandbox.wechat import WechatPayDouble

# Fast enough for a test, long enough to outlast an API process's restart (~3 s).
RETRIES = (0.3, 0.6, 1.0, 2.0, 3.0, 4.0, 6.0)


@dataclass(frozen=True)
class ProviderCase:
    kind: str
    make: Callable[[], PaymentDouble]
    # What a "stale" notify (Spoil) gets: "refused" where the protocol carries a time it
    # can be judged by; "duplicate" where an old notify replayed is the same bytes again
    # (the order is already credited, so it is answered as received and credits nothing).
    stale_verdict: str
    # Whether an expired order is closed at the provider (no payment after it), or can
    # still be paid late (易支付 has no close).
    closes: bool = True


CASES: dict[str, ProviderCase] = {
    "epay": ProviderCase(
        "epay", lambda: EpayDouble(retry_seconds=RETRIES), "duplicate", closes=False
    ),
    # Alipay's old notify is the same bytes again (same notify_id); page pay's order is
    # known to the double once the cashier is opened (PayRig.order opens it).
    "alipay": ProviderCase("alipay", lambda: AlipayDouble(retry_seconds=RETRIES), "duplicate"),
    # Both sign a timestamp: an old notify is refused by its age.
    "wechat": ProviderCase("wechat", lambda: WechatPayDouble(retry_seconds=RETRIES), "refused"),
    "stripe": ProviderCase("stripe", lambda: StripeDouble(retry_seconds=RETRIES), "refused"),
}
