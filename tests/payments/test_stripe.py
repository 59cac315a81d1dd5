"""The Stripe provider against its double over real HTTP: a Checkout Session made and paid,
its webhook event verified into the right payment (and every spoiled one refused or
reported as the service needs to see it), the query, refunds, closing and the day's list.
The double's events reach a notify endpoint of the test's own, doing what the payment
service's notify route does with them: the provider verifies, the provider answers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar

import httpx
import pytest

from shengtu.payments.base import (
    Notify,
    NotifyRefused,
    OrderRef,
    Payment,
    ProviderError,
    Urls,
)
from shengtu.payments.providers.stripe import StripeProvider, session_expiry
from shengtu.payments.sandbox.common import SPOILS, Spoil
from shengtu.payments.sandbox.stripe import CheckoutSession, StripeDouble
from tests.payments.harness import DoubleServer, served
from tests.support import free_port, serve_http, wait_for

T = TypeVar("T")
BACK = "https://shengtu.example/console/topup"
# Short, so a refused event's retries are seen within a test.
RETRIES = (0.2, 0.2, 0.2)


def order(no: str, amount: int = 1999, currency: str = "USD", minutes: int = 45) -> OrderRef:
    now = datetime.now(UTC)
    return OrderRef(
        order_no=no,
        amount=amount,
        currency=currency,
        subject="生图积分充值 1000 积分",
        created_at=now,
        expires_at=now + timedelta(minutes=minutes),
    )


def with_ref(ref: OrderRef, provider_ref: str | None) -> OrderRef:
    return OrderRef(**{**ref.__dict__, "provider_ref": provider_ref})


def call(config: dict[str, str], act: Callable[[StripeProvider], Awaitable[T]]) -> T:
    """``act`` on a provider built as the service builds one: its settings and an HTTP
    client of the service's."""

    async def run() -> T:
        async with httpx.AsyncClient(timeout=5) as http:
            return await act(StripeProvider(config, http))

    # On a thread of its own: the browser tests' Playwright holds this thread's loop.
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, run()).result()


@dataclass
class Received:
    notify: Notify
    payment: Payment | None
    refused: str | None
    status: int


class Endpoint:
    """Our notify route for one Stripe method: each event verified by the provider and
    answered as the provider says (after ``down`` answers of 503: the API restarting)."""

    def __init__(self, config: dict[str, str]) -> None:
        self.config = config
        self.received: list[Received] = []
        self.down = 0
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer = endpoint.take(Notify("POST", {}, headers, body))
                self.send_response(status)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = serve_http(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pay/notify/stripe"

    def take(self, notify: Notify) -> tuple[int, bytes]:
        with self._lock:
            if self.down > 0:
                self.down -= 1
                self.received.append(Received(notify, None, None, 503))
                return 503, b""

        async def verify(provider: StripeProvider) -> Payment | str:
            try:
                return await provider.verify(notify)
            except NotifyRefused as refused:
                return refused.reason

        got = call(self.config, verify)
        answer = call(self.config, lambda p: _answer(p, not isinstance(got, str)))
        payment, refused = (None, got) if isinstance(got, str) else (got, None)
        with self._lock:
            self.received.append(Received(notify, payment, refused, answer.status))
        return answer.status, answer.body

    def wait(self, count: int = 1) -> list[Received]:
        wait_for(f"{count} events at the endpoint", lambda: len(self.received) >= count, 10)
        return self.received

    def close(self) -> None:
        self.server.shutdown()


async def _answer(provider: StripeProvider, believed: bool) -> Any:
    return provider.answer(believed)


@pytest.fixture
def stripe() -> Iterator[tuple[DoubleServer, Endpoint]]:
    double = StripeDouble(retry_seconds=RETRIES)
    with served(double) as server:
        endpoint = Endpoint(server.merchant_config())
        double.webhook_url = endpoint.url
        try:
            yield server, endpoint
        finally:
            endpoint.close()


def created(server: DoubleServer, ref: OrderRef) -> OrderRef:
    """``ref`` made into a Checkout Session; with its session's id, as the service keeps it."""
    checkout = call(server.merchant_config(), lambda p: p.create(ref, Urls("unused", BACK)))
    return with_ref(ref, checkout.provider_ref)


def double_of(server: DoubleServer) -> StripeDouble:
    assert isinstance(server.double, StripeDouble)
    return server.double


def session(server: DoubleServer, ref: OrderRef) -> CheckoutSession:
    return double_of(server).sessions[ref.provider_ref or ""]


def test_a_paid_session_is_one_verified_event_of_the_right_payment(
    stripe: tuple[DoubleServer, Endpoint],
) -> None:
    server, endpoint = stripe
    config = server.merchant_config()
    ref = order("T20250101000001", amount=2599, currency="USD")
    checkout = call(config, lambda p: p.create(ref, Urls("unused", BACK)))
    assert checkout.kind == "redirect" and checkout.provider_ref is not None
    assert checkout.provider_ref.startswith("cs_test_")
    assert checkout.url.startswith(server.gateway + "/c/pay/")
    made = double_of(server).sessions[checkout.provider_ref]
    assert (made.amount, made.currency, made.client_reference_id) == (2599, "usd", ref.order_no)
    assert made.metadata == {"order_no": ref.order_no}
    assert (made.success_url, made.cancel_url, made.name) == (BACK, BACK, ref.subject)
    assert made.expires_at == int(ref.expires_at.timestamp())

    page = httpx.get(checkout.url)
    assert page.status_code == 200 and "25.99 USD" in page.text and ref.subject in page.text
    paid = httpx.post(checkout.url, data={"action": "pay"})
    assert paid.status_code == 303 and paid.headers["location"] == BACK

    (received,) = endpoint.wait(1)
    payment = received.payment
    assert payment is not None, received.refused
    assert payment == Payment(
        order_no=ref.order_no,
        merchant=config["account"],
        amount=2599,
        currency="USD",
        state="paid",
        trade_no=made.payment_intent,
        paid_at=payment.paid_at,
    )
    assert payment.trade_no is not None and payment.trade_no.startswith("pi_")
    assert payment.paid_at is not None and abs(time.time() - payment.paid_at.timestamp()) < 10
    assert call(config, lambda p: _merchant(p)) == config["account"]
    # Answered 200: the double took it as delivered and sends it no more.
    assert received.status == 200
    time.sleep(sum(RETRIES) + 0.2)
    assert len(endpoint.received) == 1
    assert [d.accepted for d in server.double.deliveries] == [True]
    # The page now says the session is over; paying again pays nothing twice.
    assert "complete" in httpx.get(checkout.url).text
    assert httpx.post(checkout.url, data={"action": "pay"}).status_code == 409


async def _merchant(provider: StripeProvider) -> str:
    return provider.merchant


def test_the_event_is_signed_as_stripe_signs_and_refused_once_changed(
    stripe: tuple[DoubleServer, Endpoint],
) -> None:
    server, _ = stripe
    config = server.merchant_config()
    ref = created(server, order("T20250101000002"))
    server.pay(ref.order_no, notify=False)
    notify = server.double.notify_for(ref.order_no)
    # Stripe's scheme, worked out here apart from both the double and the SDK.
    fields = dict(part.split("=", 1) for part in notify.headers["Stripe-Signature"].split(","))
    signed = fields["t"].encode() + b"." + notify.body
    secret = config["webhook_secret"].encode()
    assert fields["v1"] == hmac.new(secret, signed, hashlib.sha256).hexdigest()
    assert abs(int(fields["t"]) - time.time()) < 10

    def verified(body: bytes, header: str) -> Payment | str:
        async def verify(provider: StripeProvider) -> Payment | str:
            try:
                return await provider.verify(Notify("POST", {}, {"stripe-signature": header}, body))
            except NotifyRefused as refused:
                return refused.reason

        return call(config, verify)

    header = notify.headers["Stripe-Signature"]
    assert isinstance(verified(notify.body, header), Payment)
    changed = notify.body.replace(b'"amount_total": 1999', b'"amount_total": 1')
    assert changed != notify.body
    assert "签名不符" in str(verified(changed, header))
    assert "缺少 Stripe-Signature" in str(verified(notify.body, ""))
    late = f"t={int(fields['t']) + 1},v1={fields['v1']}"
    assert "签名不符" in str(verified(notify.body, late))
    # Verified with any other secret, it would not be.
    other = {**config, "webhook_secret": "whsec_" + "x" * 32}
    with pytest.raises(NotifyRefused):
        call(
            other, lambda p: p.verify(Notify("POST", {}, {"stripe-signature": header}, notify.body))
        )


# What the service must see of each spoiled event: refused with this in its reason, or
# verified but carrying what differs from the order.
REFUSED = {"signature": "签名不符", "stale": "重放", "malformed": "JSON"}


@pytest.mark.parametrize("spoil", SPOILS)
def test_each_spoiled_event_is_refused_or_reported_as_it_differs(
    stripe: tuple[DoubleServer, Endpoint], spoil: Spoil
) -> None:
    server, endpoint = stripe
    config = server.merchant_config()
    ref = created(server, order(f"T2025010100003{SPOILS.index(spoil)}", amount=500))
    spoiled = server.double.notify_for(ref.order_no, spoil=spoil)
    server.send(spoiled, ref.order_no)
    if spoil in REFUSED:
        # Refused, answered 400: Stripe sends it again on its schedule.
        received = endpoint.wait(1 + len(RETRIES))
        assert all(r.payment is None and r.status == 400 for r in received)
        assert REFUSED[spoil] in (received[0].refused or "")
        assert not any(d.accepted for d in server.double.deliveries)
        return
    (received,) = endpoint.wait(1)
    payment = received.payment
    assert payment is not None and payment.order_no == ref.order_no and payment.state == "paid"
    if spoil == "amount":
        assert (payment.amount, payment.merchant) == (501, config["account"])
    else:
        assert payment.amount == 500 and payment.merchant.startswith("acct_")
        assert payment.merchant != config["account"]


def test_a_bank_debit_is_pending_at_completion_then_paid_or_closed(
    stripe: tuple[DoubleServer, Endpoint],
) -> None:
    server, endpoint = stripe
    config = server.merchant_config()
    settles = created(server, order("T20250101000004"))
    fails = created(server, order("T20250101000005"))
    url = session(server, settles).page_url
    assert httpx.post(url, data={"action": "later"}).status_code == 303
    server.run(lambda: double_of(server).pay_later(fails.order_no))
    first = endpoint.wait(2)
    assert {r.payment.order_no: r.payment.state for r in first if r.payment} == {
        settles.order_no: "pending",
        fails.order_no: "pending",
    }
    assert call(config, lambda p: p.query(settles)).state == "pending"  # type: ignore[union-attr]
    server.run(lambda: double_of(server).settle(settles.order_no))
    server.run(lambda: double_of(server).settle(fails.order_no, succeeded=False))
    later = endpoint.wait(4)[2:]
    states = {r.payment.order_no: r.payment.state for r in later if r.payment}
    assert states == {settles.order_no: "paid", fails.order_no: "closed"}
    assert call(config, lambda p: p.query(settles)).state == "paid"  # type: ignore[union-attr]
    events = [e["type"] for e in double_of(server).events.values()]
    assert "checkout.session.async_payment_succeeded" in events
    assert "checkout.session.async_payment_failed" in events


def test_the_query_says_what_stripe_knows_by_the_session_or_by_the_order_number(
    stripe: tuple[DoubleServer, Endpoint],
) -> None:
    server, _ = stripe
    config = server.merchant_config()
    ref = created(server, order("T20250101000006", amount=880, currency="CNY"))
    pending = call(config, lambda p: p.query(ref))
    assert pending is not None and (pending.state, pending.amount, pending.currency) == (
        "pending",
        880,
        "CNY",
    )
    server.pay(ref.order_no, notify=False)  # the event lost: only the query tells
    paid = call(config, lambda p: p.query(ref))
    assert paid is not None and paid.state == "paid" and paid.merchant == config["account"]
    assert paid.trade_no == session(server, ref).payment_intent
    # A create whose answer never came: the session is found by our order number.
    lost = call(config, lambda p: p.query(with_ref(ref, None)))
    assert lost == paid
    unknown = with_ref(ref, "cs_test_" + "0" * 58)
    assert call(config, lambda p: p.query(unknown)) is None
    assert call(config, lambda p: p.query(with_ref(order("T20250101009999"), None))) is None


def test_a_create_sent_again_is_the_same_session(stripe: tuple[DoubleServer, Endpoint]) -> None:
    server, _ = stripe
    ref = order("T20250101000007")
    first, again = created(server, ref), created(server, ref)
    assert first.provider_ref == again.provider_ref
    assert len(double_of(server).sessions) == 1


def test_a_refund_sent_again_is_one_refund(stripe: tuple[DoubleServer, Endpoint]) -> None:
    server, _ = stripe
    config = server.merchant_config()
    ref = created(server, order("T20250101000008", amount=1000))
    with pytest.raises(ProviderError) as unpaid:
        call(config, lambda p: p.refund(ref, 100, "R1", "未付款"))
    assert "PaymentIntent" in unpaid.value.reason and unpaid.value.certain
    server.pay(ref.order_no, notify=False)
    first = call(config, lambda p: p.refund(ref, 400, "R1", "用户申请退款"))
    again = call(config, lambda p: p.refund(ref, 400, "R1", "用户申请退款"))
    assert first == again and first.state == "done" and first.refund_no == "R1"
    assert first.provider_ref is not None and first.provider_ref.startswith("re_")
    refunds = double_of(server).refunds
    assert list(refunds) == [first.provider_ref]
    made = refunds[first.provider_ref]
    assert (made["amount"], made["payment_intent"]) == (400, session(server, ref).payment_intent)
    assert made["metadata"] == {
        "order_no": ref.order_no,
        "refund_no": "R1",
        "reason": "用户申请退款",
    }
    assert server.double.orders[ref.order_no].refunded == 400
    with pytest.raises(ProviderError) as reused:
        call(config, lambda p: p.refund(ref, 500, "R1", "用户申请退款"))
    assert "幂等" in reused.value.reason
    with pytest.raises(ProviderError) as too_much:
        call(config, lambda p: p.refund(ref, 601, "R2", "再退"))
    assert "greater than" in too_much.value.reason and too_much.value.certain
    rest = call(config, lambda p: p.refund(ref, 600, "R3", "余下的"))
    assert rest.state == "done" and server.double.orders[ref.order_no].state == "refunded"


def test_close_expires_the_session_and_says_so_once_paid(
    stripe: tuple[DoubleServer, Endpoint],
) -> None:
    server, endpoint = stripe
    config = server.merchant_config()
    ref = created(server, order("T20250101000009", minutes=15))
    call(config, lambda p: p.close(ref))
    assert session(server, ref).status == "expired"
    (received,) = endpoint.wait(1)
    assert received.payment is not None and received.payment.state == "closed"
    assert call(config, lambda p: p.query(ref)).state == "closed"  # type: ignore[union-attr]
    call(config, lambda p: p.close(ref))  # closed already: nothing to say
    assert "no longer active" in httpx.get(session(server, ref).page_url).text
    paid = created(server, order("T20250101000010"))
    server.pay(paid.order_no, notify=False)
    with pytest.raises(ProviderError) as refused:
        call(config, lambda p: p.close(paid))
    assert "已完成支付" in refused.value.reason


def test_the_day_lists_every_paid_session_of_that_day_across_pages(
    stripe: tuple[DoubleServer, Endpoint],
) -> None:
    server, _ = stripe
    double = double_of(server)
    config = server.merchant_config()
    day = date(2025, 3, 14)
    # Midnight in Shanghai is 16:00 UTC the day before.
    start = int(datetime(2025, 3, 13, 16, tzinfo=UTC).timestamp())
    made = {"inside": 0, "unpaid": 0}
    for i in range(230):
        at = start - 1 if i == 0 else start + 86400 if i == 1 else start + i * 300
        paid = i % 5 != 0
        double.sessions[f"cs_test_{i:04d}"] = CheckoutSession(
            id=f"cs_test_{i:04d}",
            client_reference_id=f"D{i:04d}",
            amount=100 + i,
            currency="usd",
            name="积分",
            created=at,
            expires_at=at + 3600,
            success_url=BACK,
            cancel_url=BACK,
            page_url="",
            status="complete" if paid else "expired",
            payment_status="paid" if paid else "unpaid",
            payment_intent=f"pi_{i:04d}" if paid else None,
        )
        made["inside" if paid and i > 1 else "unpaid"] += 1
    listed = call(config, lambda p: p.daily(day, "Asia/Shanghai"))
    assert listed is not None
    expected = {f"D{i:04d}": 100 + i for i in range(2, 230) if i % 5 != 0}
    assert {p.order_no: p.amount for p in listed} == expected
    assert len(listed) == made["inside"] > 100  # more than one page of 100
    assert {(p.state, p.currency, p.merchant) for p in listed} == {
        ("paid", "USD", config["account"])
    }


def test_a_wrong_key_is_refused_as_stripe_refuses_it(stripe: tuple[DoubleServer, Endpoint]) -> None:
    server, _ = stripe
    config = server.merchant_config()
    wrong = "sk_test_" + "Z" * 36 + "9876"
    answer = httpx.get(
        server.gateway + "/v1/checkout/sessions", headers={"Authorization": f"Bearer {wrong}"}
    )
    assert answer.status_code == 401
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Invalid API Key provided: sk_test_****")
    assert error["message"].endswith("9876") and wrong not in error["message"]
    assert httpx.get(server.gateway + "/v1/account").status_code == 401
    with pytest.raises(ProviderError) as refused:
        call({**config, "secret_key": wrong}, lambda p: p.create(order("T1"), Urls("", BACK)))
    assert "密钥" in refused.value.reason and refused.value.certain
    assert wrong not in refused.value.reason
    assert double_of(server).sessions == {}
    # The right key, sent HTTP Basic's way (curl -u sk_...:), is taken.
    basic = httpx.get(server.gateway + "/v1/account", auth=(config["secret_key"], ""))
    assert basic.json()["id"] == config["account"]


def test_the_double_reads_params_and_idempotency_keys_as_stripe_does(
    stripe: tuple[DoubleServer, Endpoint],
) -> None:
    server, _ = stripe
    api = httpx.Client(
        base_url=server.gateway,
        headers={"Authorization": f"Bearer {server.merchant_config()['secret_key']}"},
    )
    soon = int(time.time()) + 3600
    form = {
        "mode": "payment",
        "line_items[0][price_data][currency]": "eur",
        "line_items[0][price_data][unit_amount]": "250",
        "line_items[0][price_data][product_data][name]": "积分",
        "line_items[0][quantity]": "2",
        "client_reference_id": "F1",
        "success_url": BACK,
        "expires_at": str(soon),
    }
    made = api.post("/v1/checkout/sessions", data=form, headers={"Idempotency-Key": "k1"})
    assert made.status_code == 200, made.text
    body = made.json()
    assert (body["object"], body["amount_total"], body["currency"]) == (
        "checkout.session",
        500,
        "eur",
    )
    assert (body["status"], body["payment_status"], body["expires_at"]) == ("open", "unpaid", soon)
    replay = api.post("/v1/checkout/sessions", data=form, headers={"Idempotency-Key": "k1"})
    assert replay.json() == body and replay.headers["idempotent-replayed"] == "true"
    other = api.post(
        "/v1/checkout/sessions",
        data={**form, "client_reference_id": "F2"},
        headers={"Idempotency-Key": "k1"},
    )
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"

    def refused(data: dict[str, str]) -> dict[str, str]:
        answer = api.post("/v1/checkout/sessions", data=data)
        assert answer.status_code == 400, answer.text
        return answer.json()["error"]  # type: ignore[no-any-return]

    assert refused({**form, "colour": "red"})["message"] == "Received unknown parameter: colour"
    lacking = {k: v for k, v in form.items() if not k.endswith("[currency]")}
    assert refused(lacking)["param"] == "line_items[0][price_data][currency]"
    assert refused({**form, "expires_at": str(int(time.time()) + 600)})["param"] == "expires_at"
    assert refused({**form, "line_items[0][quantity]": "two"})["message"] == "Invalid integer: two"

    assert (
        api.get("/v1/checkout/sessions/cs_test_nope").json()["error"]["code"] == "resource_missing"
    )
    listed = api.get("/v1/checkout/sessions", params={"status": "open", "limit": "1"}).json()
    assert [s["id"] for s in listed["data"]] == [body["id"]] and listed["has_more"] is False
    assert api.get("/v1/checkout/sessions", params={"status": "complete"}).json()["data"] == []
    later = {"created[gt]": str(body["created"])}
    assert api.get("/v1/checkout/sessions", params=later).json()["data"] == []


def test_a_request_stripe_never_answered_is_uncertain_and_one_never_sent_is_not() -> None:
    class Silent(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            time.sleep(2)

        def log_message(self, *args: Any) -> None:
            pass

    silent = serve_http(Silent)
    try:
        slow = {
            "gateway": f"http://127.0.0.1:{silent.server_address[1]}",
            "account": "acct_x",
            "secret_key": "sk_test_x",
            "webhook_secret": "whsec_x",
        }

        async def create(provider: StripeProvider) -> Any:
            return await provider.create(order("T3"), Urls("", BACK))

        async def timed_out() -> ProviderError:
            async with httpx.AsyncClient(timeout=0.3) as http:
                with pytest.raises(ProviderError) as caught:
                    await create(StripeProvider(slow, http))
                return caught.value

        uncertain = asyncio.run(timed_out())
        assert not uncertain.certain and "不确定" in uncertain.reason
    finally:
        silent.shutdown()
    closed = {**slow, "gateway": f"http://127.0.0.1:{free_port()}"}
    with pytest.raises(ProviderError) as unreachable:
        call(closed, create)
    assert unreachable.value.certain and "无法连接" in unreachable.value.reason


def test_deliveries_are_retried_until_answered_2xx_as_the_same_event(
    stripe: tuple[DoubleServer, Endpoint],
) -> None:
    server, endpoint = stripe
    endpoint.down = 2
    ref = created(server, order("T20250101000011"))
    server.pay(ref.order_no)
    received = endpoint.wait(3)
    assert [r.status for r in received] == [503, 503, 200]
    assert [d.accepted for d in server.double.deliveries] == [False, False, True]
    assert len({r.notify.body for r in received}) == 1  # one event, sent three times
    assert received[2].payment is not None and received[2].payment.state == "paid"


def test_the_session_lives_what_the_order_does_within_stripes_bounds() -> None:
    now = datetime(2025, 5, 1, 12, tzinfo=UTC)

    def at(minutes: float, age: float = 0) -> float:
        made = now - timedelta(minutes=age)
        ref = OrderRef("X", 1, "USD", "", made, made + timedelta(minutes=minutes))
        return (session_expiry(ref, now) - now.timestamp()) / 60

    assert at(45) == 45  # the order's own end
    assert at(15) == 31  # Stripe's shortest, with a minute to spare
    assert at(60 * 48) == 23 * 60 + 59  # Stripe's longest
    assert at(15, age=0.5) == 30.5  # sent again soon after: the same expiry
    assert at(15, age=5) == 31  # much later: from now
    naive = OrderRef("X", 1, "USD", "", now.replace(tzinfo=None), now.replace(tzinfo=None))
    assert session_expiry(naive, now) == now.timestamp() + 31 * 60


def test_the_answers_and_what_a_kept_notify_hides() -> None:
    async def answers(provider: StripeProvider) -> tuple[int, int]:
        return provider.answer(True).status, provider.answer(False).status

    assert call({}, answers) == (200, 400)
    assert "stripe-signature" in StripeProvider.redact
    secrets_ = {f.name for f in StripeProvider.fields if f.secret}
    assert secrets_ == {"secret_key", "webhook_secret"}
    assert StripeProvider.currencies is None


def test_the_payer_pays_on_the_hosted_page_in_a_browser(
    stripe: tuple[DoubleServer, Endpoint], page: Any
) -> None:
    server, endpoint = stripe

    class Back(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write("<title>回到生图</title>".encode())

        def log_message(self, *args: Any) -> None:
            pass

    back = serve_http(Back)
    try:
        back_url = f"http://127.0.0.1:{back.server_address[1]}/console/topup"
        hostile = "<img src=x onerror=alert(1)>"
        ref = OrderRef(**{**order("T20250101000012", amount=1200).__dict__, "subject": hostile})
        checkout = call(server.merchant_config(), lambda p: p.create(ref, Urls("", back_url)))
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(checkout.url)
        assert page.get_by_test_id("product").inner_text() == hostile
        assert page.get_by_test_id("amount").inner_text() == "12.00 USD"
        page.get_by_test_id("pay").click()
        page.wait_for_url(back_url)
        assert page.title() == "回到生图" and dialogs == []
    finally:
        back.shutdown()
    (received,) = endpoint.wait(1)
    assert received.payment is not None and received.payment.state == "paid"
    assert received.payment.order_no == ref.order_no
