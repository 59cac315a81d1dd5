"""The 微信支付 (WeChat Pay API v3) provider against its double, over real HTTP: the double
checks every request's signature with the merchant's public key and signs every answer
with WeChat Pay's key, so a provider that signed or verified wrong fails here. A notify
travels from the double to a receiver that verifies it with the provider and answers as
the provider says; every spoiled notify is refused (or, when only the service can tell,
reported as what it is). One test checks the Authorization header against the documented
signing string, written out here, so that the double and the provider cannot agree on a
wrong one."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shengtu.payments.base import Notify, NotifyRefused, OrderRef, Payment, ProviderError, Urls
from shengtu.payments.providers.wechat import WechatPayProvider, bill_payments
from shengtu.payments.sandbox.common import SPOILS, PreparedNotify, Spoil
from shengtu.payments.sandbox.wechat import WechatPayDouble
from tests.payments.harness import DoubleServer, served
from tests.support import serve_http, wait_for

T = TypeVar("T")
RETRIES = (0.1, 0.2)  # the double's notify schedule, shortened: three tries in all
URLS = Urls(notify="http://127.0.0.1:9/pay/notify/wechat", back="http://127.0.0.1:9/topup")


@pytest.fixture
def server() -> Iterator[DoubleServer]:
    with served(WechatPayDouble(retry_seconds=RETRIES)) as s:
        yield s


def wechat(server: DoubleServer) -> WechatPayDouble:
    assert isinstance(server.double, WechatPayDouble)
    return server.double


def an_order(amount: int = 1000, **kw: Any) -> OrderRef:
    now = datetime.now(UTC)
    return OrderRef(
        order_no=kw.pop("order_no", "ST" + secrets.token_hex(8)),
        amount=amount,
        currency="CNY",
        subject="生图积分充值 1000 积分",
        created_at=now,
        expires_at=now + timedelta(minutes=15),
        **kw,
    )


def call(
    config: dict[str, str],
    act: Callable[[WechatPayProvider], Awaitable[T]],
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = 10,
) -> T:
    """``act(provider)`` with a provider of ``config`` on an HTTP client of its own."""

    async def run() -> T:
        async with httpx.AsyncClient(timeout=timeout, transport=transport) as http:
            return await act(WechatPayProvider(config, http))

    return asyncio.run(run())


def as_notify(prepared: PreparedNotify) -> Notify:
    """A prepared notify as the service's route would hand it over."""
    headers = {name.lower(): value for name, value in prepared.headers.items()}
    return Notify(prepared.method, {}, headers, prepared.body)


def verify(config: dict[str, str], notify: Notify) -> Payment:
    return call(config, lambda p: p.verify(notify))


def refusal(config: dict[str, str], notify: Notify) -> str:
    with pytest.raises(NotifyRefused) as refused:
        verify(config, notify)
    return refused.value.reason


@dataclass
class Receiver:
    """Shengtu's notify route in miniature: the provider verifies, and the notify is
    believed when its merchant and amount are the order's (the service's rule)."""

    url: str
    verdicts: list[Payment | str] = field(default_factory=list)  # a Payment or why refused


@contextmanager
def receiver(config: dict[str, str], amounts: dict[str, int]) -> Iterator[Receiver]:
    provider = WechatPayProvider(config, httpx.AsyncClient())
    got = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                payment = asyncio.run(provider.verify(Notify("POST", {}, headers, body)))
            except NotifyRefused as exc:
                got.verdicts.append(exc.reason)
                believed = False
            else:
                got.verdicts.append(payment)
                believed = (
                    payment.merchant == provider.merchant
                    and amounts.get(payment.order_no) == payment.amount
                    and payment.state == "paid"
                )
            answer = provider.answer(believed)
            self.send_response(answer.status)
            if answer.body:
                self.send_header("Content-Type", answer.media_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, *args: Any) -> None:
            pass

    http = serve_http(Handler)
    got.url = f"http://127.0.0.1:{http.server_port}/pay/notify/wechat"
    try:
        yield got
    finally:
        http.shutdown()


def created(server: DoubleServer, order: OrderRef, notify_url: str = URLS.notify) -> str:
    checkout = call(
        server.merchant_config(), lambda p: p.create(order, Urls(notify_url, URLS.back))
    )
    assert checkout.kind == "qr"
    return checkout.url


def test_a_paid_order_notifies_a_payment_that_verifies(server: DoubleServer) -> None:
    config = server.merchant_config()
    order = an_order(1234)
    with receiver(config, {order.order_no: order.amount}) as got:
        code_url = created(server, order, got.url)
        held = server.double.orders[order.order_no]
        assert code_url.startswith(server.gateway + "/pay/")
        assert (held.amount, held.currency, held.notify_url) == (1234, "CNY", got.url)
        assert held.extra["description"] == order.subject
        expires = datetime.fromisoformat(held.extra["time_expire"])
        assert expires == order.expires_at.replace(microsecond=0)
        assert expires.utcoffset() == timedelta(hours=8)  # Beijing time, RFC 3339

        server.pay(order.order_no)
        wait_for("the notify", lambda: got.verdicts)
        payment = got.verdicts[0]
        assert isinstance(payment, Payment), payment
        assert payment.order_no == order.order_no
        assert payment.merchant == config["mchid"]
        assert (payment.amount, payment.currency, payment.state) == (1234, "CNY", "paid")
        assert payment.trade_no == held.trade_no
        assert payment.paid_at is not None
        assert abs(payment.paid_at - datetime.now(UTC)) < timedelta(seconds=30)
        # Answered 204 with nothing: WeChat Pay stops sending.
        wait_for("the delivery", lambda: server.double.deliveries)
        time.sleep(0.5)  # past the first retry, had there been one
        assert [(d.status, d.body, d.accepted) for d in server.double.deliveries] == [
            (204, b"", True)
        ]


def test_the_cashier_page_pays_and_the_notify_follows(server: DoubleServer) -> None:
    config = server.merchant_config()
    order = an_order(88)
    with receiver(config, {order.order_no: 88}) as got:
        code_url = created(server, order, got.url)
        page = httpx.get(code_url)
        assert page.status_code == 200
        assert 'id="pay"' in page.text and "¥0.88" in page.text
        assert order.subject in page.text
        assert server.double.orders[order.order_no].state == "pending"
        paid = httpx.post(code_url)
        assert "支付成功" in paid.text
        wait_for("the notify", lambda: got.verdicts)
        assert isinstance(got.verdicts[0], Payment)
        assert got.verdicts[0].order_no == order.order_no


@pytest.mark.parametrize("spoil", SPOILS)
def test_every_spoiled_notify_is_refused_or_reported_as_what_it_is(
    server: DoubleServer, spoil: Spoil
) -> None:
    config = server.merchant_config()
    order = an_order(500)
    created(server, order)
    if spoil != "signature":  # a forgery needs no payment
        server.pay(order.order_no, notify=False)
    notify = as_notify(server.double.notify_for(order.order_no, spoil=spoil))
    if spoil in ("signature", "stale", "malformed"):
        with pytest.raises(NotifyRefused) as refused:
            verify(config, notify)
        expected = {"signature": "签名验证失败", "stale": "超过 5 分钟", "malformed": "格式错误"}
        assert expected[spoil] in refused.value.reason, refused.value.reason
        # Named for the operator where the sealed resource opens (not a cut-off body).
        named = None if spoil == "malformed" else order.order_no
        assert refused.value.order_no == named
        return
    # Validly signed and sealed: only the order can tell these from the real one.
    payment = verify(config, notify)
    assert payment.order_no == order.order_no
    if spoil == "amount":
        assert (payment.amount, payment.merchant) == (501, config["mchid"])
    else:
        assert payment.merchant == wechat(server).other_mchid != config["mchid"]
        assert payment.amount == 500


def test_a_notify_not_believed_is_answered_fail_and_sent_again(server: DoubleServer) -> None:
    config = server.merchant_config()
    order = an_order(700)
    with receiver(config, {order.order_no: 700}) as got:
        created(server, order, got.url)
        server.pay(order.order_no, notify=False)
        spoiled = server.double.notify_for(order.order_no, spoil="amount")
        server.send(spoiled, order.order_no)
        tries = 1 + len(RETRIES)
        wait_for("every try", lambda: len(server.double.deliveries) == tries, timeout=10)
    for delivery in server.double.deliveries:
        assert delivery.status == 400 and not delivery.accepted
        assert json.loads(delivery.body) == {"code": "FAIL", "message": "失败"}
    assert all(isinstance(v, Payment) and v.amount == 701 for v in got.verdicts)


def test_a_notify_altered_or_of_another_key_or_apiv3_key_is_refused(
    server: DoubleServer,
) -> None:
    config = server.merchant_config()
    order = an_order(300)
    created(server, order)
    server.pay(order.order_no, notify=False)
    good = as_notify(server.double.notify_for(order.order_no))
    assert verify(config, good).state == "paid"

    envelope = json.loads(good.body)
    envelope["resource"]["nonce"] = "x" * 12
    altered = Notify("POST", {}, good.headers, json.dumps(envelope).encode())
    assert "签名验证失败" in refusal(config, altered)

    other_serial = {**good.headers, "wechatpay-serial": "PUB_KEY_ID_0000000000000000000000"}
    assert "公钥 ID" in refusal(config, Notify("POST", {}, other_serial, good.body))

    unsigned = {k: v for k, v in good.headers.items() if k != "wechatpay-signature"}
    assert "缺少" in refusal(config, Notify("POST", {}, unsigned, good.body))

    # Signed by WeChat Pay, sealed for another merchant's APIv3 key.
    other_key = {**config, "apiv3_key": "k" * 32}
    assert "解密失败" in refusal(other_key, good)

    assert "POST" in refusal(config, Notify("GET", {}, good.headers, good.body))


def test_the_answers_to_a_notify() -> None:
    provider = WechatPayProvider({}, httpx.AsyncClient())
    believed = provider.answer(True)
    assert (believed.status, believed.body) == (204, b"")
    refused = provider.answer(False)
    assert refused.status >= 400 and refused.media_type == "application/json"
    assert json.loads(refused.body) == {"code": "FAIL", "message": "失败"}
    double = WechatPayDouble()
    assert double.accepted(200, b"") and double.accepted(204, b"")
    assert not double.accepted(400, refused.body) and not double.accepted(500, b"")


def test_secrets_are_redacted_from_kept_notifies() -> None:
    assert {"authorization", "wechatpay-signature"} <= WechatPayProvider.redact
    secret_fields = {f.name for f in WechatPayProvider.fields if f.secret}
    assert secret_fields == {"private_key", "apiv3_key"}


def test_query_says_paid_pending_closed_or_unknown(server: DoubleServer) -> None:
    config = server.merchant_config()
    order = an_order(999)
    created(server, order)
    pending = call(config, lambda p: p.query(order))
    assert pending is not None
    assert (pending.state, pending.amount, pending.merchant) == ("pending", 999, config["mchid"])
    assert pending.trade_no is None and pending.paid_at is None

    server.pay(order.order_no, notify=False)  # the notify lost: only a query tells
    paid = call(config, lambda p: p.query(order))
    assert paid is not None
    assert (paid.state, paid.amount, paid.currency) == ("paid", 999, "CNY")
    assert paid.trade_no == server.double.orders[order.order_no].trade_no
    assert paid.paid_at is not None

    assert call(config, lambda p: p.query(an_order())) is None


def test_close_an_expired_order(server: DoubleServer) -> None:
    config = server.merchant_config()
    order = an_order()
    created(server, order)
    call(config, lambda p: p.close(order))
    closed = call(config, lambda p: p.query(order))
    assert closed is not None and closed.state == "closed"
    call(config, lambda p: p.close(an_order()))  # unknown there: nothing to close

    paid = an_order()
    created(server, paid)
    server.pay(paid.order_no, notify=False)
    with pytest.raises(ProviderError) as refused:
        call(config, lambda p: p.close(paid))
    assert "ORDERPAID" in refused.value.reason and refused.value.certain


def test_refunds_whole_part_again_and_too_much(server: DoubleServer) -> None:
    config = server.merchant_config()
    order = an_order(1000)
    created(server, order)
    server.pay(order.order_no, notify=False)

    first = call(config, lambda p: p.refund(order, 400, "RF" + order.order_no, "用户申请"))
    assert first.state == "done" and first.provider_ref
    again = call(config, lambda p: p.refund(order, 400, "RF" + order.order_no, "用户申请"))
    assert again.provider_ref == first.provider_ref
    assert server.double.orders[order.order_no].refunded == 400  # one refund, asked twice

    refunded = call(config, lambda p: p.query(order))
    assert refunded is not None and refunded.state == "refunded"

    with pytest.raises(ProviderError) as too_much:
        call(config, lambda p: p.refund(order, 601, "RF2" + order.order_no, ""))
    assert "超过" in too_much.value.reason

    wechat(server).refund_status = "PROCESSING"
    rest = call(config, lambda p: p.refund(order, 600, "RF3" + order.order_no, ""))
    assert rest.state == "pending"
    assert server.double.orders[order.order_no].refunded == 1000


def test_a_tampered_answer_signature_is_refused(server: DoubleServer) -> None:
    config = server.merchant_config()
    order = an_order()
    created(server, order)
    wechat(server).tamper_answers = True
    with pytest.raises(ProviderError) as refused:
        call(config, lambda p: p.query(order))
    assert "验签" in refused.value.reason
    # Nor does a forged "no such order" pass for one.
    with pytest.raises(ProviderError):
        call(config, lambda p: p.query(an_order()))
    with pytest.raises(ProviderError):
        created(server, an_order())

    wechat(server).tamper_answers = False
    answer_of_another_key = {**config, "wechatpay_public_key_id": "PUB_KEY_ID_0123"}
    with pytest.raises(ProviderError) as wrong_id:
        call(answer_of_another_key, lambda p: p.query(order))
    assert "公钥 ID" in wrong_id.value.reason


def test_a_wrong_merchant_key_or_serial_is_refused_by_the_double(server: DoubleServer) -> None:
    config = server.merchant_config()
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = stranger.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    order = an_order()
    for wrong in ({**config, "private_key": pem}, {**config, "cert_serial_no": "0" * 40}):
        with pytest.raises(ProviderError) as refused:
            call(wrong, lambda p: p.create(order, URLS))
        assert "HTTP 401 SIGN_ERROR" in refused.value.reason
        assert refused.value.certain
    assert order.order_no not in server.double.orders
    assert [reason for _, reason in wechat(server).refused] == [
        "错误的签名,验签失败",
        "商户证书序列号有误。请使用签名私钥匹配的证书序列号",
    ]


def test_the_authorization_is_the_documented_signature() -> None:
    """Checked against WeChat Pay's signing string as its documentation writes it, with a
    request captured before it leaves."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    double = WechatPayDouble()
    config = double.merchant_config("https://api.example.test/wx")
    config["private_key"] = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    sent: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500, json={"code": "SYSTEM_ERROR", "message": "系统错误"})

    order = an_order(order_no="ST0001")
    with pytest.raises(ProviderError) as failed:
        call(config, lambda p: p.create(order, URLS), transport=httpx.MockTransport(capture))
    assert not failed.value.certain  # a 5xx may have acted
    with pytest.raises(ProviderError):
        call(config, lambda p: p.query(order), transport=httpx.MockTransport(capture))

    create, query = sent
    assert str(create.url) == "https://api.example.test/wx/v3/pay/transactions/native"
    assert query.url.raw_path.decode() == (
        f"/wx/v3/pay/transactions/out-trade-no/ST0001?mchid={config['mchid']}"
    )
    for request in sent:
        scheme, _, rest = request.headers["authorization"].partition(" ")
        assert scheme == "WECHATPAY2-SHA256-RSA2048"
        fields = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        assert fields["mchid"] == config["mchid"]
        assert fields["serial_no"] == config["cert_serial_no"]
        assert abs(int(fields["timestamp"]) - time.time()) < 60
        message = "\n".join(
            [
                request.method,
                request.url.raw_path.decode(),
                fields["timestamp"],
                fields["nonce_str"],
                request.content.decode(),
                "",
            ]
        )
        key.public_key().verify(
            base64.b64decode(fields["signature"]),
            message.encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    assert json.loads(create.content) == {
        "appid": config["appid"],
        "mchid": config["mchid"],
        "description": order.subject,
        "out_trade_no": "ST0001",
        "time_expire": order.expires_at.astimezone(ZoneInfo("Asia/Shanghai")).isoformat(
            timespec="seconds"
        ),
        "notify_url": URLS.notify,
        "amount": {"total": 1000, "currency": "CNY"},
    }
    assert query.content == b""


def test_the_daily_bill_lists_the_days_payments(server: DoubleServer) -> None:
    config = server.merchant_config()
    orders = [an_order(100), an_order(2550), an_order(42)]
    for order in orders:
        created(server, order)
    for order in orders[:2]:
        server.pay(order.order_no, notify=False)
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    payments = call(config, lambda p: p.daily(today, "Asia/Shanghai"))
    assert payments is not None
    got = {(p.order_no, p.amount, p.merchant, p.state, p.trade_no) for p in payments}
    assert got == {
        (o.order_no, o.amount, config["mchid"], "paid", server.double.orders[o.order_no].trade_no)
        for o in orders[:2]
    }
    assert call(config, lambda p: p.daily(today - timedelta(days=3), "Asia/Shanghai")) == []


def test_a_bill_is_read_by_its_header_and_a_bad_amount_is_refused() -> None:
    text = (
        "交易时间,商户号,微信订单号,商户订单号,交易状态,货币种类,订单金额\r\n"
        "`2026-01-02 03:04:05,`1900000109,`4200001,`ST01,`SUCCESS,`CNY,`12.30\r\n"
        "总交易单数,订单总金额\r\n`1,`12.30\r\n"
    )
    (payment,) = bill_payments(text)
    assert (payment.order_no, payment.amount, payment.trade_no) == ("ST01", 1230, "4200001")
    assert payment.paid_at == datetime(2026, 1, 1, 19, 4, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="不是以元为单位的金额"):
        bill_payments(text.replace("12.30\r\n总", "12.305\r\n总"))


def test_a_lost_answer_is_uncertain_and_a_refused_connection_certain() -> None:
    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            time.sleep(1.5)

        def log_message(self, *args: Any) -> None:
            pass

    slow = serve_http(Slow)
    try:
        config = WechatPayDouble().merchant_config(f"http://127.0.0.1:{slow.server_port}")
        with pytest.raises(ProviderError) as lost:
            call(config, lambda p: p.create(an_order(), URLS), timeout=0.3)
        assert not lost.value.certain
    finally:
        slow.shutdown()
    with pytest.raises(ProviderError) as refused:
        call({**config, "gateway": "http://127.0.0.1:9"}, lambda p: p.create(an_order(), URLS))
    assert refused.value.certain


def test_a_bad_key_in_the_settings_is_a_clear_error(server: DoubleServer) -> None:
    config = server.merchant_config()
    with pytest.raises(ProviderError, match="私钥"):
        call({**config, "private_key": "not a key"}, lambda p: p.create(an_order(), URLS))
    with pytest.raises(ProviderError, match="微信支付公钥"):
        call({**config, "wechatpay_public_key": "nope"}, lambda p: p.query(an_order()))
    order = an_order()
    created(server, order)
    server.pay(order.order_no, notify=False)
    notify = as_notify(server.double.notify_for(order.order_no))
    assert "32 个字节" in refusal({**config, "apiv3_key": "short"}, notify)
