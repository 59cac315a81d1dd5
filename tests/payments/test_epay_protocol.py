"""易支付's signature and times, against the protocol's own spelling."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import httpx
import pytest

from shengtu.payments import redact
from shengtu.payments.base import Notify, OrderRef, ProviderError, Urls
from shengtu.payments.providers.epay import EpayProvider, sign, signed
from shengtu.payments.sandbox.epay import EpayDouble
from tests.payments.harness import served

T = TypeVar("T")

KEY = "f872e1c662d41cf218b5dfa8328ae455"


def test_the_signature_is_md5_over_the_sorted_non_empty_fields_and_the_key() -> None:
    fields = {
        "pid": "1001",
        "type": "alipay",
        "out_trade_no": "TEST123456",
        "notify_url": "http://example.com/notify",
        "return_url": "",  # empty: left out
        "name": "测试商品",
        "money": "0.01",
        "sign": "ignored",
        "sign_type": "MD5",
    }
    text = (
        "money=0.01&name=测试商品&notify_url=http://example.com/notify"
        "&out_trade_no=TEST123456&pid=1001&type=alipay"
    )
    expected = hashlib.md5((text + KEY).encode()).hexdigest()
    assert sign(fields, KEY) == expected
    made = signed(fields, KEY)
    assert made["sign"] == expected and made["sign_type"] == "MD5" and "return_url" not in made
    assert sign(fields, KEY + "x") != expected


def test_a_day_is_read_on_the_gateways_beijing_clock_in_the_sites_zone() -> None:
    """The gateway writes Beijing's wall clock: a payment at 00:30 there (16:30 UTC the day
    before) is on Beijing's next day, whatever zone this machine is in, and the site's zone
    says which day the report puts it on."""
    with served(EpayDouble()) as server:
        config = {**server.merchant_config(), "mode": "mapi"}
        orders = [_order() for _ in range(3)]

        async def create_all(provider: EpayProvider) -> None:
            for order in orders:
                await provider.create(order, URLS)

        _call(config, create_all)
        paid_at = (
            datetime(2026, 3, 13, 15, 59, tzinfo=UTC),  # 23:59 in Beijing, the 13th
            datetime(2026, 3, 13, 16, 30, tzinfo=UTC),  # 00:30 in Beijing, the 14th
            datetime(2026, 3, 14, 15, 59, tzinfo=UTC),  # 23:59 in Beijing, the 14th
        )
        for order, at in zip(orders, paid_at, strict=True):
            server.pay(order.order_no, notify=False)
            server.double.orders[order.order_no].paid_at = at
        day = date(2026, 3, 14)

        def reported(tz: str) -> set[str]:
            payments = _call(config, lambda p: p.daily(day, tz))
            assert payments is not None
            return {p.order_no for p in payments}

        assert reported("Asia/Shanghai") == {orders[1].order_no, orders[2].order_no}
        assert reported("UTC") == {orders[2].order_no}
        assert reported("America/New_York") == {orders[2].order_no}


URLS = Urls(notify="http://127.0.0.1:9/pay/notify/epay", back="http://127.0.0.1:9/topup")


def _order() -> OrderRef:
    now = datetime.now(UTC)
    return OrderRef(
        order_no="ST" + secrets.token_hex(8),
        amount=700,
        currency="CNY",
        subject="生图积分充值 70 积分",
        created_at=now,
        expires_at=now + timedelta(minutes=15),
    )


def _call(config: dict[str, str], act: Callable[[EpayProvider], Awaitable[T]]) -> T:
    async def run() -> T:
        async with httpx.AsyncClient(timeout=10) as http:
            return await act(EpayProvider(config, http))

    return asyncio.run(run())


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
def test_a_kept_notify_masks_the_signature_whatever_its_content_type(
    content_type: str | None,
) -> None:
    """易支付 reads any POST body as a form, so a notify sent without the form header is
    still a form to mask."""
    body = f"pid=1000&out_trade_no=P1&money=1.00&sign={'a' * 32}&sign_type=MD5"
    headers = {"content-type": content_type} if content_type else {}
    _, kept = redact.kept(Notify("POST", {}, headers, body.encode()), EpayProvider.redact)
    assert "a" * 32 not in kept and "out_trade_no=P1" in kept


def test_the_double_refuses_an_order_signed_with_another_key() -> None:
    """A signing bug (or a wrong key) fails here: the gateway checks the MD5 itself."""
    with served(EpayDouble()) as server:
        good = {**server.merchant_config(), "mode": "mapi"}

        async def create(provider: EpayProvider) -> str:
            try:
                return (await provider.create(_order(), URLS)).url
            except ProviderError as refused:
                return refused.reason

        assert _call(good, create).startswith("http")
        wrong = {**good, "key": good["key"][:-1] + ("0" if good["key"][-1] != "0" else "1")}
        assert "签名校验失败" in _call(wrong, create)
