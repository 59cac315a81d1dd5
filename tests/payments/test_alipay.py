"""支付宝 over real HTTP against its double: page pay and the QR code, the cashier's payment
and the notify it sends (verified to the right Payment, sent again until answered
``success``), every spoiled notify, query, refund, close, the daily bill, and the refusals
a wrong key meets on either side. The double checks signatures with ``cryptography`` and
the provider signs with python-alipay-sdk, so a signing mistake fails here."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from shengtu.payments.base import (
    Notify,
    NotifyRefused,
    OrderRef,
    Payment,
    ProviderError,
    Urls,
)
from shengtu.payments.providers.alipay import AlipayProvider, signed_text
from shengtu.payments.sandbox.alipay import (
    AlipayDouble,
    new_key,
    pem_private,
    pem_public,
    rsa2,
    sign_content,
)
from shengtu.payments.sandbox.common import SPOILS, PreparedNotify
from tests.payments.harness import DoubleServer, served
from tests.support import free_port, wait_for

T = TypeVar("T")
BEIJING = timedelta(hours=8)


@dataclass
class Receiver:
    """Shengtu's notify endpoint, played by a test: keeps each notify as it came and
    answers ``fail`` to the first ``refuse`` of them, then ``success``."""

    url: str
    got: list[Notify] = field(default_factory=list)
    refuse: int = 0

    async def notify(self, request: Request) -> Response:
        self.got.append(
            Notify(
                method=request.method,
                query=dict(request.query_params),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=await request.body(),
            )
        )
        if len(self.got) <= self.refuse:
            return Response("fail", media_type="text/plain")
        return Response("success", media_type="text/plain")

    def for_order(self, order_no: str) -> list[Notify]:
        return [n for n in self.got if dict(parse_qsl(n.body.decode()))["out_trade_no"] == order_no]


@pytest.fixture(scope="module")
def double() -> Iterator[DoubleServer]:
    with served(AlipayDouble(retry_seconds=(0.05, 0.05, 0.1, 0.1))) as server:
        yield server


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    port = free_port()
    receiver = Receiver(f"http://127.0.0.1:{port}/pay/notify/alipay")
    app = Starlette(
        routes=[
            Route("/pay/notify/alipay", receiver.notify, methods=["POST"]),
            Route("/console/topup", lambda _: HTMLResponse("<h1>充值结果</h1>")),
        ]
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for("the receiver to listen", lambda: server.started, timeout=10)
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(10)


def order_ref(amount: int = 1000, *, minutes: int = 30) -> OrderRef:
    now = datetime.now(UTC)
    return OrderRef(
        order_no="T" + secrets.token_hex(8),
        amount=amount,
        currency="CNY",
        subject=f"生图积分充值 {amount} 积分",
        created_at=now,
        expires_at=now + timedelta(minutes=minutes),
    )


def use(config: dict[str, str], fn: Callable[[AlipayProvider], Awaitable[T]], **http: Any) -> T:
    """``fn`` of a provider built from ``config``, with its own async client, on a loop of
    its own (the browser tests' Playwright holds one in this thread)."""

    async def main() -> T:
        async with httpx.AsyncClient(timeout=10, **http) as client:
            return await fn(AlipayProvider(config, client))

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def urls(receiver: Receiver) -> Urls:
    return Urls(notify=receiver.url, back="http://127.0.0.1:9/console/topup?from=alipay")


def as_notify(prepared: PreparedNotify) -> Notify:
    return Notify("POST", {}, dict(prepared.headers), prepared.body)


def verify(config: dict[str, str], notify: Notify) -> Payment:
    async def go(provider: AlipayProvider) -> Payment:
        return await provider.verify(notify)

    return use(config, go)


def create(config: dict[str, str], order: OrderRef, to: Urls) -> Any:
    async def go(provider: AlipayProvider) -> Any:
        return await provider.create(order, to)

    return use(config, go)


def query(config: dict[str, str], order: OrderRef) -> Payment | None:
    async def go(provider: AlipayProvider) -> Payment | None:
        return await provider.query(order)

    return use(config, go)


def opened(double: DoubleServer, receiver: Receiver, order: OrderRef) -> str:
    """A page pay of ``order`` created and its checkout opened in the payer's browser; the
    cashier's page."""
    checkout = create(double.merchant_config(), order, urls(receiver))
    page = httpx.get(checkout.url)
    assert page.status_code == 200
    return page.text


def paid(double: DoubleServer, receiver: Receiver, order: OrderRef, *, notify: bool = True) -> None:
    opened(double, receiver, order)
    double.pay(order.order_no, notify=notify)


def test_the_signed_text_is_found_even_with_braces_inside_a_string() -> None:
    raw = '{"alipay_trade_query_response":{"sub_msg":"a}b{","code":"10000"},"sign":"x"}'
    assert signed_text(raw, "alipay_trade_query_response") == '{"sub_msg":"a}b{","code":"10000"}'
    assert signed_text(raw, "alipay_trade_close_response") is None


def test_page_pay_sends_the_browser_to_the_gateway_with_a_signed_request(
    double: DoubleServer, receiver: Receiver
) -> None:
    # Alipay refuses a subject with / = or &: they are left out.
    order = replace(order_ref(1234), subject="充值/1000=积分&送")
    checkout = create(double.merchant_config(), order, urls(receiver))
    assert checkout.kind == "redirect"
    assert checkout.url.startswith(double.gateway + "/gateway.do?")
    sent = {k: v[0] for k, v in parse_qs(urlsplit(checkout.url).query).items()}
    assert sent["method"] == "alipay.trade.page.pay"
    assert sent["sign_type"] == "RSA2"
    assert sent["notify_url"] == receiver.url

    page = httpx.get(checkout.url)
    assert page.status_code == 200
    assert "12.34" in page.text and 'id="pay"' in page.text
    held = double.double.orders[order.order_no]
    assert (held.amount, held.notify_url) == (1234, receiver.url)
    assert held.extra["subject"] == "充值1000积分送"


def test_a_page_pay_changed_after_signing_is_refused_by_the_gateway(
    double: DoubleServer, receiver: Receiver
) -> None:
    order = order_ref(1000)
    checkout = create(double.merchant_config(), order, urls(receiver))
    tampered = checkout.url.replace("10.00", "0.01")
    assert tampered != checkout.url
    page = httpx.get(tampered)
    assert "isv.invalid-signature" in page.text
    assert order.order_no not in double.double.orders


def test_qr_pay_answers_a_code_whose_page_is_the_cashier(
    double: DoubleServer, receiver: Receiver
) -> None:
    config = {**double.merchant_config(), "mode": "qr"}
    order = order_ref(500)
    checkout = create(config, order, urls(receiver))
    assert checkout.kind == "qr"
    assert checkout.url.startswith(double.gateway + "/qr/")
    # Nobody scanned yet: Alipay knows no trade.
    assert query(config, order) is None
    page = httpx.get(checkout.url)
    assert "5.00" in page.text and order.subject in page.text
    pending = query(config, order)
    assert pending is not None and pending.state == "pending"
    # The same order again gets the same code.
    assert create(config, order, urls(receiver)).url == checkout.url


def test_paying_at_the_cashier_notifies_a_payment_that_verifies(
    double: DoubleServer, receiver: Receiver
) -> None:
    config = double.merchant_config()
    order = order_ref(1000)
    cashier = opened(double, receiver, order)
    action = cashier.split('action="')[1].split('"')[0]
    back = httpx.post(action, follow_redirects=False)
    assert back.status_code == 303
    assert back.headers["location"].startswith(urls(receiver).back + "&")

    got = wait_for("the notify", lambda: receiver.for_order(order.order_no))
    payment = verify(config, got[0])
    held = double.double.orders[order.order_no]
    assert payment == Payment(
        order_no=order.order_no,
        merchant=config["app_id"],
        amount=1000,
        currency="CNY",
        state="paid",
        trade_no=held.trade_no,
        paid_at=held.paid_at.replace(microsecond=0) if held.paid_at else None,
    )
    wait_for("the answer", lambda: any(d.accepted for d in double.double.deliveries))


def test_a_payer_in_a_browser_pays_at_the_cashier_and_comes_back(
    double: DoubleServer, receiver: Receiver, page: Any
) -> None:
    order = order_ref(660)
    back = receiver.url.replace("/pay/notify/alipay", "/console/topup?from=alipay")
    checkout = create(double.merchant_config(), order, Urls(notify=receiver.url, back=back))
    page.goto(checkout.url)
    assert page.text_content("#amount") == "6.60"
    page.click("#pay")
    page.wait_for_url(back + "&*")
    assert page.text_content("h1") == "充值结果"
    got = wait_for("the notify", lambda: receiver.for_order(order.order_no))
    assert verify(double.merchant_config(), got[0]).state == "paid"


def test_the_return_to_the_console_is_signed_by_alipay(
    double: DoubleServer, receiver: Receiver
) -> None:
    order = order_ref(300)
    cashier = opened(double, receiver, order)
    action = cashier.split('action="')[1].split('"')[0]
    location = httpx.post(action, follow_redirects=False).headers["location"]
    fields = dict(parse_qsl(urlsplit(location).query))
    fields.pop("from")

    async def go(provider: AlipayProvider) -> bool:
        sign = fields.pop("sign")
        return bool(provider.sdk().verify(dict(fields), sign))

    assert use(double.merchant_config(), go)


def test_a_notify_not_answered_success_is_sent_again_as_it_was(
    double: DoubleServer, receiver: Receiver
) -> None:
    order = order_ref(200)
    opened(double, receiver, order)
    receiver.refuse = len(receiver.got) + 2
    try:
        double.pay(order.order_no)
        wait_for(
            "the notify accepted",
            lambda: any(
                d.accepted and d.order_no == order.order_no for d in double.double.deliveries
            ),
        )
    finally:
        receiver.refuse = 0
    sent = receiver.for_order(order.order_no)
    assert len(sent) == 3
    assert len({n.body for n in sent}) == 1
    answers = [d.body for d in double.double.deliveries if d.order_no == order.order_no]
    assert answers == [b"fail", b"fail", b"success"]


@pytest.mark.parametrize("spoil", SPOILS)
def test_a_spoiled_notify_is_refused_or_differs_from_the_order(
    double: DoubleServer, receiver: Receiver, spoil: Any
) -> None:
    config = double.merchant_config()
    order = order_ref(1000)
    paid(double, receiver, order, notify=False)
    genuine = verify(config, as_notify(double.double.notify_for(order.order_no)))
    spoiled = as_notify(double.double.notify_for(order.order_no, spoil=spoil))
    if spoil in ("signature", "malformed"):
        with pytest.raises(NotifyRefused) as refused:
            verify(config, spoiled)
        assert refused.value.reason
        return
    payment = verify(config, spoiled)
    assert payment.order_no == order.order_no
    if spoil == "amount":
        assert payment.amount != order.amount
        assert payment.merchant == config["app_id"]
    elif spoil == "merchant":
        assert payment.merchant != config["app_id"]
        assert payment.amount == order.amount
    else:  # stale: the very notify Alipay sent before, a repeat to the service
        assert payment == genuine
        first = dict(parse_qsl(double.double.notify_for(order.order_no).body.decode()))
        again = dict(parse_qsl(spoiled.body.decode()))
        assert again["notify_id"] == first["notify_id"]


def test_forged_notifies_of_an_unpaid_order_claim_it_paid_and_are_caught(
    double: DoubleServer, receiver: Receiver
) -> None:
    config = double.merchant_config()
    order = order_ref(1000)
    opened(double, receiver, order)
    with pytest.raises(NotifyRefused):
        verify(config, as_notify(double.double.notify_for(order.order_no, spoil="signature")))
    # An old notify of an unpaid order is the one of its creation: still waiting.
    stale = verify(config, as_notify(double.double.notify_for(order.order_no, spoil="stale")))
    assert stale.state == "pending"


def test_a_notify_changed_in_any_field_is_refused(double: DoubleServer, receiver: Receiver) -> None:
    config = double.merchant_config()
    order = order_ref(1000)
    paid(double, receiver, order, notify=False)
    fields = dict(parse_qsl(double.double.notify_for(order.order_no).body.decode()))
    for name, value in (("total_amount", "10.01"), ("trade_status", "TRADE_FINISHED")):
        changed = {**fields, name: value}
        with pytest.raises(NotifyRefused, match="签名不对"):
            verify(config, Notify("POST", {}, {}, urlencode(changed).encode()))
    # sign_type is outside what Alipay signs: dropping it changes nothing.
    without = {k: v for k, v in fields.items() if k != "sign_type"}
    assert verify(config, Notify("POST", {}, {}, urlencode(without).encode())).state == "paid"


def test_an_empty_field_of_a_notify_is_outside_what_alipay_signs(
    double: DoubleServer, receiver: Receiver
) -> None:
    order = order_ref()
    paid(double, receiver, order, notify=False)
    fields = dict(parse_qsl(double.double.notify_for(order.order_no).body.decode()))
    fields.pop("sign")
    fields["passback_params"] = ""
    content = sign_content(fields, leave_out=("sign", "sign_type"))
    assert "passback_params" not in content
    fields["sign"] = rsa2(double.double.alipay_key, content)
    body = urlencode(fields).encode()
    assert verify(double.merchant_config(), Notify("POST", {}, {}, body)).state == "paid"


def test_query_says_paid_pending_or_unknown(double: DoubleServer, receiver: Receiver) -> None:
    config = double.merchant_config()
    order = order_ref(800)
    assert query(config, order) is None
    opened(double, receiver, order)
    pending = query(config, order)
    assert pending is not None and (pending.state, pending.amount) == ("pending", 800)
    double.pay(order.order_no, notify=False)
    known = query(config, order)
    held = double.double.orders[order.order_no]
    assert known is not None
    assert (known.state, known.amount, known.merchant, known.trade_no) == (
        "paid",
        800,
        config["app_id"],
        held.trade_no,
    )
    assert known.paid_at is not None


def test_refunds_are_done_once_each_and_never_above_the_amount(
    double: DoubleServer, receiver: Receiver
) -> None:
    config = double.merchant_config()
    order = order_ref(1000)
    paid(double, receiver, order, notify=False)

    async def refunds(provider: AlipayProvider) -> list[Any]:
        first = await provider.refund(order, 300, "R" + order.order_no + "a", "用户申请")
        again = await provider.refund(order, 300, "R" + order.order_no + "a", "用户申请")
        rest = await provider.refund(order, 700, "R" + order.order_no + "b", "用户申请")
        return [first, again, rest]

    done = use(config, refunds)
    held = double.double.orders[order.order_no]
    assert [r.state for r in done] == ["done"] * 3
    assert {r.provider_ref for r in done} == {held.trade_no}
    assert (held.refunded, held.state) == (1000, "refunded")
    after = query(config, order)
    assert after is not None and after.state == "refunded"

    async def too_much(provider: AlipayProvider) -> Any:
        return await provider.refund(order, 1, "R" + order.order_no + "c", "再退")

    with pytest.raises(ProviderError, match="退款金额超限") as refused:
        use(config, too_much)
    assert refused.value.certain


def test_a_refund_alipay_has_not_finished_is_pending() -> None:
    """fund_change N, and the refund query shows no refund yet (Alipay answers such a
    query with success and no refund_status)."""
    keys = _keys_only()
    config = keys.merchant_config("http://alipay.invalid")
    asked: list[str] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        method = dict(parse_qsl(request.content.decode()))["method"]
        asked.append(method)
        said = {"code": "10000", "msg": "Success", "trade_no": "2024T", "fund_change": "N"}
        if method != "alipay.trade.refund":
            said = {"code": "10000", "msg": "Success", "out_trade_no": "T1"}
        answer = keys.answer(method, said)
        return httpx.Response(200, content=answer.body, headers={"content-type": "text/json"})

    async def refund(provider: AlipayProvider) -> Any:
        return await provider.refund(order_ref(), 100, "R1", "用户申请")

    done = use(config, refund, transport=httpx.MockTransport(gateway))
    assert (done.state, done.provider_ref) == ("pending", "2024T")
    assert asked == ["alipay.trade.refund", "alipay.trade.fastpay.refund.query"]


def test_close_ends_a_waiting_trade_and_not_a_paid_one(
    double: DoubleServer, receiver: Receiver
) -> None:
    config = double.merchant_config()

    async def close(provider: AlipayProvider, order: OrderRef) -> None:
        await provider.close(order)

    waiting, done, unseen = order_ref(), order_ref(), order_ref()
    opened(double, receiver, waiting)
    use(config, lambda p: close(p, waiting))
    assert double.double.orders[waiting.order_no].state == "closed"
    closed = query(config, waiting)
    assert closed is not None and closed.state == "closed"

    paid(double, receiver, done, notify=False)
    with pytest.raises(ProviderError, match="交易状态不合法"):
        use(config, lambda p: close(p, done))

    # Never opened: Alipay has no trade to close, which is no failure.
    use(config, lambda p: close(p, unseen))


def test_the_sdks_own_client_is_answered_as_alipay_answers_it(
    double: DoubleServer, receiver: Receiver
) -> None:
    """The SDK's synchronous path (every parameter in a GET query, its own answer check)
    against the double: the double speaks the protocol, not only our way of using it."""
    config = double.merchant_config()
    order = order_ref(4200)
    paid(double, receiver, order, notify=False)
    client = AlipayProvider(config, httpx.AsyncClient()).sdk()
    client._gateway = config["gateway"]
    answer = client.api_alipay_trade_query(out_trade_no=order.order_no)
    assert (answer["code"], answer["trade_status"], answer["total_amount"]) == (
        "10000",
        "TRADE_SUCCESS",
        "42.00",
    )


def test_a_provider_signing_with_another_app_key_is_refused(
    double: DoubleServer, receiver: Receiver
) -> None:
    config = {**double.merchant_config(), "app_private_key": pem_private(new_key())}
    order = order_ref()
    paid(double, receiver, order, notify=False)
    with pytest.raises(ProviderError, match=r"isv\.invalid-signature") as refused:
        query(config, order)
    assert refused.value.certain
    page = httpx.get(create(config, order_ref(), urls(receiver)).url)
    assert "isv.invalid-signature" in page.text


def test_answers_and_notifies_not_signed_by_the_configured_alipay_key_are_not_believed(
    double: DoubleServer, receiver: Receiver
) -> None:
    config = {**double.merchant_config(), "alipay_public_key": pem_public(new_key())}
    order = order_ref()
    paid(double, receiver, order, notify=False)
    with pytest.raises(ProviderError, match="签名不对") as refused:
        query(config, order)
    assert not refused.value.certain
    with pytest.raises(NotifyRefused):
        verify(config, as_notify(double.double.notify_for(order.order_no)))


def test_keys_as_the_console_gives_them_bare_base64_work(
    double: DoubleServer, receiver: Receiver
) -> None:
    def bare(pem: str) -> str:
        return "".join(line for line in pem.splitlines() if not line.startswith("-----"))

    config = double.merchant_config()
    config["app_private_key"] = bare(config["app_private_key"])
    config["alipay_public_key"] = bare(config["alipay_public_key"])
    order = order_ref()
    paid(double, receiver, order, notify=False)
    known = query(config, order)
    assert known is not None and known.state == "paid"


def test_an_unreadable_key_is_a_clear_refusal(double: DoubleServer) -> None:
    config = {**double.merchant_config(), "app_private_key": "not a key"}
    with pytest.raises(ProviderError, match="应用私钥"):
        query(config, order_ref())
    public_as_private = {**double.merchant_config(), "app_private_key": pem_public(new_key())}
    with pytest.raises(ProviderError, match="不是私钥"):
        query(public_as_private, order_ref())


def test_a_timeout_is_uncertain_and_a_refused_connection_certain() -> None:
    config = AlipayDouble.merchant_config(_keys_only(), "http://127.0.0.1:9/alipay")

    def timing_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    with pytest.raises(ProviderError) as late:
        use(config, lambda p: p.query(order_ref()), transport=httpx.MockTransport(timing_out))
    assert not late.value.certain
    closed = {**config, "gateway": f"http://127.0.0.1:{free_port()}/gateway.do"}
    with pytest.raises(ProviderError) as unreachable:
        use(closed, lambda p: p.query(order_ref()))
    assert unreachable.value.certain


def test_a_success_answer_without_a_signature_is_not_believed() -> None:
    config = AlipayDouble.merchant_config(_keys_only(), "http://alipay.invalid")
    body = {"alipay_trade_query_response": {"code": "10000", "trade_status": "TRADE_SUCCESS"}}

    def unsigned(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    with pytest.raises(ProviderError, match="没有签名"):
        use(config, lambda p: p.query(order_ref()), transport=httpx.MockTransport(unsigned))


def test_the_daily_bill_lists_the_days_payments(double: DoubleServer, receiver: Receiver) -> None:
    config = double.merchant_config()
    yesterday = datetime.now(UTC) - timedelta(days=1)
    day = (yesterday + BEIJING).date()
    orders = [order_ref(1000), order_ref(2550)]
    for order in orders:
        paid(double, receiver, order, notify=False)
        double.double.orders[order.order_no].paid_at = yesterday

    async def refund(provider: AlipayProvider) -> Any:
        return await provider.refund(orders[0], 100, "R" + orders[0].order_no, "部分退款")

    use(config, refund)
    double.double.refunds[-1].at = yesterday

    async def bill(provider: AlipayProvider, of: date) -> list[Payment] | None:
        return await provider.daily(of, "Asia/Shanghai")

    payments = use(config, lambda p: bill(p, day))
    assert payments is not None
    ours = {p.order_no: p for p in payments if p.order_no in {o.order_no for o in orders}}
    assert {no: (p.amount, p.state) for no, p in ours.items()} == {
        orders[0].order_no: (1000, "paid"),
        orders[1].order_no: (2550, "paid"),
    }
    assert ours[orders[1].order_no].trade_no == double.double.orders[orders[1].order_no].trade_no
    # Today's bill is made tomorrow: Alipay cannot say yet.
    assert use(config, lambda p: bill(p, (datetime.now(UTC) + BEIJING).date())) is None


def test_the_kept_notify_shows_no_signature(double: DoubleServer, receiver: Receiver) -> None:
    order = order_ref()
    paid(double, receiver, order, notify=False)
    fields = dict(parse_qsl(double.double.notify_for(order.order_no).body.decode()))
    kept = {k: v for k, v in fields.items() if k not in AlipayProvider.redact}
    assert fields["sign"] not in urlencode(kept) and fields["sign"] not in str(kept)
    secrets_in_config = {f.name for f in AlipayProvider.fields if f.secret}
    assert secrets_in_config == {"app_private_key"}
    assert not secrets_in_config & set(fields)


def test_the_answers_alipay_expects() -> None:
    provider = AlipayProvider({}, httpx.AsyncClient())
    assert provider.answer(True).body == b"success"
    assert provider.answer(False).body != b"success"
    assert AlipayDouble.accepted(_keys_only(), 200, b"success")
    assert not AlipayDouble.accepted(_keys_only(), 200, b"success\n")


_KEYS: list[AlipayDouble] = []


def _keys_only() -> AlipayDouble:
    """A double not served: its keys and settings only (made once, keys take time)."""
    if not _KEYS:
        _KEYS.append(AlipayDouble())
    return _KEYS[0]
