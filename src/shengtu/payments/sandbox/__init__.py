"""The payment providers' doubles, by kind (payments.providers.PROVIDERS' kinds): each a
real HTTP server's routes that sign and verify as its provider does."""

from __future__ import annotations

from shengtu.payments.sandbox.alipay import AlipayDouble
from shengtu.payments.sandbox.common import PaymentDouble
from shengtu.payments.sandbox.epay import EpayDouble
from shengtu.payments.sandbox.stripe import StripeDouble
from shengtu.payments.sandbox.wechat import WechatPayDouble

DOUBLES: dict[str, type[PaymentDouble]] = {
    "epay": EpayDouble,
    "alipay": AlipayDouble,
    "wechat": WechatPayDouble,
    "stripe": StripeDouble,
}
