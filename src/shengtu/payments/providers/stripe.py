"""Stripe: the payer pays on a hosted Checkout Session page; Stripe tells us by a webhook
event signed with the endpoint's secret (``Stripe-Signature``).

The API calls go through the ``stripe`` SDK (its parameter encoding, its error classes), sent
over the service's own httpx client rather than a pool of the SDK's making per provider. The
webhook is verified by the SDK's ``WebhookSignature`` (HMAC-SHA256 of ``"{t}.{body}"``, at
most 300 s old). This module is ``shengtu.payments.providers.stripe``: the ``import stripe``
below is absolute, the SDK's, never this module.

The merchant. A Checkout Session names no account; an event names one (``account``) only
when it comes from another account through Connect. So the merchant a payment carries is
the event's ``account`` when it has one, else the account the secret key belongs to, asked
of Stripe once (``GET /v1/account``) and kept for the process. The operator's ``account``
setting must be that account: a key of another account, or another account's event, makes
every payment's merchant differ from the method's and nothing is credited.

Stripe takes no notify URL per payment: the operator registers the method's notify URL as a
webhook endpoint in Stripe's dashboard, for the four ``checkout.session.*`` events in
:data:`EVENT_STATES`. Amounts are in the currency's minor unit on both sides, as Shengtu's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import stripe

from shengtu.payments.base import (
    Answer,
    Checkout,
    ConfigField,
    Notify,
    NotifyIgnored,
    NotifyRefused,
    OrderRef,
    Payment,
    PaymentProvider,
    PaymentState,
    ProviderError,
    Refund,
    Urls,
)
from shengtu.timefmt import day_in_utc

if TYPE_CHECKING:
    from stripe.params.checkout import SessionListParams, SessionListParamsCreated

T = TypeVar("T")

GATEWAY = "https://api.stripe.com"
# Stripe's own tolerance: an older signed event may be a replay.
TOLERANCE_SECONDS = 300
# A Checkout Session lives 30 minutes to 24 hours from its creation, whatever our order's
# minutes: a minute of slack either side for the clocks. An order that expires sooner is
# closed (its session expired) by :meth:`StripeProvider.close`.
SHORTEST_SESSION = timedelta(minutes=31)
LONGEST_SESSION = timedelta(hours=23, minutes=59)
# What each event we take says of the payment; ``completed`` depends on the session's
# ``payment_status`` (``unpaid``: a bank debit or voucher still on its way).
EVENT_STATES: dict[str, PaymentState | None] = {
    "checkout.session.completed": None,
    "checkout.session.async_payment_succeeded": "paid",
    "checkout.session.async_payment_failed": "closed",
    "checkout.session.expired": "closed",
}
PAID_STATUSES = frozenset({"paid", "no_payment_required"})

# (gateway, digest of the secret key) -> the key's own account id: one ``GET /v1/account``
# a key per process, and no key kept as a dictionary's key.
_OWN_ACCOUNTS: dict[tuple[str, str], str] = {}


class _ServiceHttp(stripe.HTTPClient):
    """The SDK's requests, sent over the httpx client the payment service owns (its pool,
    its timeouts, closed by it): ``stripe.HTTPXClient`` would open a pool of its own for
    every provider built and never close it."""

    name = "httpx"

    def __init__(self, http: httpx.AsyncClient) -> None:
        super().__init__()
        self._http = http

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            answer = await self._http.request(method, url, headers=headers, content=post_data)
        except httpx.HTTPError as e:
            # The SDK's own type, so its requestor treats it as a failed connection; the
            # httpx error stays as the cause (whether the request went out).
            raise stripe.APIConnectionError(type(e).__name__) from e  # type: ignore[no-untyped-call]
        return answer.content, answer.status_code, answer.headers

    def sleep_async(self, secs: float) -> Awaitable[None]:
        return asyncio.sleep(secs)

    async def close_async(self) -> None:
        """The service closes its client."""


def _refusal(action: str, error: stripe.StripeError) -> ProviderError:
    """What went wrong, in Chinese, and whether Stripe may have acted all the same."""
    said = error.user_message or ""
    if isinstance(error, stripe.APIConnectionError):
        # Refused or unreachable before a byte went out: certainly not done.
        if isinstance(error.__cause__, httpx.ConnectError | httpx.ConnectTimeout):
            return ProviderError(f"{action}失败：无法连接 Stripe")
        return ProviderError(f"{action}失败：Stripe 未及时应答，不确定是否已处理", certain=False)
    if isinstance(error, stripe.AuthenticationError):
        return ProviderError(f"{action}失败：Stripe 拒绝了密钥（secret_key 无效或已撤销）")
    if isinstance(error, stripe.PermissionError):
        return ProviderError(f"{action}失败：该 Stripe 密钥无权执行此操作")
    if isinstance(error, stripe.RateLimitError):
        return ProviderError(f"{action}失败：Stripe 限流，请稍后再试")
    if isinstance(error, stripe.IdempotencyError):
        return ProviderError(f"{action}失败：同一幂等键的请求参数与先前不同：{said}")
    if isinstance(error, stripe.InvalidRequestError | stripe.CardError):
        return ProviderError(f"{action}失败：Stripe 拒绝了请求：{said}")
    status = error.http_status or "无"
    return ProviderError(
        f"{action}失败：Stripe 出错（HTTP {status}），不确定是否已处理：{said}", certain=False
    )


def _epoch(moment: datetime) -> int:
    """Unix seconds of ``moment``; a naive one is UTC, as the database keeps times."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def session_expiry(order: OrderRef, now: datetime) -> int:
    """When the order's Checkout Session expires: the order's own end, within what Stripe
    takes. Worked out from the order (not the clock) while it can be, so a create sent
    again soon after is the same request, and Stripe answers it with the same session."""
    created, expires, current = _epoch(order.created_at), _epoch(order.expires_at), _epoch(now)
    shortest, longest = int(SHORTEST_SESSION.total_seconds()), int(LONGEST_SESSION.total_seconds())
    wanted = min(max(expires, created + shortest), created + longest)
    if wanted < current + shortest - 60:
        wanted = current + shortest
    return min(wanted, current + longest)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise NotifyRefused(f"Stripe 事件缺少{what}")
    return value


def _object_id(value: object) -> str | None:
    """An id, whether the field came as the id or expanded into its object."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def session_state(session: Mapping[str, Any]) -> PaymentState:
    """What a Checkout Session, as the API answers it, says of its payment."""
    status = session.get("status")
    if status == "complete" and session.get("payment_status") in PAID_STATUSES:
        return "paid"
    if status == "expired":
        return "closed"
    # Open, or complete with a bank debit still on its way.
    return "pending"


def event_state(kind: str, session: Mapping[str, Any]) -> PaymentState:
    """What an event we take (:func:`read_event` let it through) says of the payment."""
    said = EVENT_STATES[kind]
    if said is not None:
        return said
    return "paid" if session.get("payment_status") in PAID_STATUSES else "pending"


def _payment(
    session: Mapping[str, Any], merchant: str, state: PaymentState, paid_at: datetime | None
) -> Payment:
    amount = session.get("amount_total")
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise NotifyRefused("Stripe 事件缺少金额 amount_total")
    return Payment(
        order_no=_text(session.get("client_reference_id"), "订单号 client_reference_id"),
        merchant=merchant,
        amount=amount,
        currency=_text(session.get("currency"), "币种 currency").upper(),
        state=state,
        trade_no=_object_id(session.get("payment_intent")),
        paid_at=paid_at if state == "paid" else None,
    )


def read_event(body: bytes) -> dict[str, Any]:
    """A verified body as a ``checkout.session`` event we take, or why it is not one."""
    try:
        event = json.loads(body)
    except ValueError:
        raise NotifyRefused("Stripe 事件不是合法的 JSON") from None
    if not isinstance(event, dict) or event.get("object") != "event":
        raise NotifyRefused("Stripe 通知不是事件对象（object 不是 event）")
    kind = _text(event.get("type"), "事件类型 type")
    if kind not in EVENT_STATES:
        # Signed by Stripe for this endpoint, subscribed to more than it needs: a 4xx
        # would have Stripe retry it for days and then disable the endpoint.
        raise NotifyIgnored(
            f"不处理的 Stripe 事件 {kind}(已确认收到,未作处理);Webhook 端点只需订阅 "
            + "、".join(EVENT_STATES)
        )
    data = event.get("data")
    session = data.get("object") if isinstance(data, dict) else None
    if not isinstance(session, dict) or session.get("object") != "checkout.session":
        raise NotifyRefused("Stripe 事件的 data.object 不是 Checkout Session")
    return event


class StripeProvider(PaymentProvider):
    kind = "stripe"
    label = "Stripe"
    currencies = None
    fields = (
        ConfigField("gateway", "API 地址", default=GATEWAY),
        ConfigField("account", "账号 ID（acct_…，Stripe 后台 设置 → 商家详情）"),
        ConfigField("secret_key", "密钥（sk_… 或受限密钥 rk_…）", secret=True),
        ConfigField("webhook_secret", "Webhook 签名密钥（whsec_…）", secret=True),
    )
    redact = frozenset({"stripe-signature"})
    refund_repeat_hours = 23.0  # Stripe keeps an Idempotency-Key 24 hours

    def __init__(self, config: Mapping[str, str], http: httpx.AsyncClient) -> None:
        super().__init__(config, http)
        self.gateway = (self.config.get("gateway") or GATEWAY).rstrip("/")
        self.client = stripe.StripeClient(
            self.config.get("secret_key", ""),
            base_addresses={"api": self.gateway},
            http_client=_ServiceHttp(http),
            # The service asks again on its own schedule (the query job's back-off).
            max_network_retries=0,
        )

    @property
    def merchant(self) -> str:
        return self.config.get("account", "")

    async def _call(self, action: str, request: Awaitable[T]) -> T:
        try:
            return await request
        except stripe.StripeError as e:
            raise _refusal(action, e) from None

    async def own_account(self) -> str:
        """The account the secret key belongs to."""
        key = (self.gateway, hashlib.sha256(self.config.get("secret_key", "").encode()).hexdigest())
        if key not in _OWN_ACCOUNTS:
            account = await self._call(
                "查询本账号", self.client.v1.accounts.retrieve_current_async()
            )
            _OWN_ACCOUNTS[key] = account.id
        return _OWN_ACCOUNTS[key]

    async def create(self, order: OrderRef, urls: Urls) -> Checkout:
        expires_at = session_expiry(order, datetime.now(UTC))
        session = await self._call(
            "创建 Checkout Session",
            self.client.v1.checkout.sessions.create_async(
                {
                    "mode": "payment",
                    "line_items": [
                        {
                            "price_data": {
                                "currency": order.currency.lower(),
                                "unit_amount": order.amount,
                                "product_data": {"name": order.subject or order.order_no},
                            },
                            "quantity": 1,
                        }
                    ],
                    "client_reference_id": order.order_no,
                    "metadata": {"order_no": order.order_no},
                    "success_url": urls.back,
                    "cancel_url": urls.back,
                    "expires_at": expires_at,
                },
                # The same order's create sent again (after a timeout) is the same session.
                {"idempotency_key": f"shengtu-checkout-{order.order_no}-{expires_at}"},
            ),
        )
        if not session.url:
            raise ProviderError("创建 Checkout Session 失败：Stripe 没有给出支付页地址")
        return Checkout("redirect", session.url, provider_ref=session.id)

    async def verify(self, notify: Notify) -> Payment:
        secret = self.config.get("webhook_secret", "")
        header = notify.headers.get("stripe-signature")
        try:
            stripe.WebhookSignature.verify_header(notify.body, header, secret, TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError:
            raise NotifyRefused(
                self._why_unverified(notify.body, header, secret), order_no=_named(notify.body)
            ) from None
        except UnicodeDecodeError:
            raise NotifyRefused("Stripe 事件不是 UTF-8 文本") from None
        event = read_event(notify.body)
        session = event["data"]["object"]
        state = event_state(event["type"], session)
        account = event.get("account")
        if account is not None:
            merchant = _text(account, "账号 account")
        else:
            try:
                merchant = await self.own_account()
            except ProviderError as e:
                raise NotifyRefused(f"无法确认 Stripe 账号：{e.reason}") from None
        created = event.get("created")
        paid_at = datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None
        return _payment(session, merchant, state, paid_at)

    @staticmethod
    def _why_unverified(body: bytes, header: str | None, secret: str) -> str:
        """A refused signature's reason: a good signature on an old event is a replay."""
        if not header:
            return "缺少 Stripe-Signature 签名头"
        try:
            stripe.WebhookSignature.verify_header(body, header, secret, tolerance=None)
        except stripe.SignatureVerificationError:
            return "Stripe-Signature 签名不符（不是本端点的签名密钥所签，或内容被改动）"
        return f"Stripe 事件的签名时间超出 {TOLERANCE_SECONDS} 秒，可能是重放的旧事件"

    def answer(self, believed: bool) -> Answer:
        # Stripe takes any 2xx as delivered and retries anything else for days.
        if believed:
            return Answer(200, b'{"received": true}', "application/json")
        return Answer(400, b'{"received": false}', "application/json")

    async def _session(self, session_id: str) -> dict[str, Any] | None:
        try:
            found = await self.client.v1.checkout.sessions.retrieve_async(session_id)
        except stripe.InvalidRequestError as e:
            if e.http_status == 404:
                return None
            raise _refusal("查询 Checkout Session", e) from None
        except stripe.StripeError as e:
            raise _refusal("查询 Checkout Session", e) from None
        return found.to_dict()

    async def _sessions(
        self, created: SessionListParamsCreated, status: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every session created in ``created``'s interval, a page of 100 at a time."""
        after: str | None = None
        while True:
            params: SessionListParams = {"created": created, "limit": 100}
            if status is not None:
                params["status"] = status
            if after is not None:
                params["starting_after"] = after
            page = await self._call(
                "列出 Checkout Session", self.client.v1.checkout.sessions.list_async(params)
            )
            for session in page.data:
                yield session.to_dict()
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id

    async def _order_session(self, order: OrderRef) -> dict[str, Any] | None:
        """The order's session: by its id, or (the id never reached us: a create that timed
        out) among those made while the order could be paid, a paid one first."""
        if order.provider_ref and order.provider_ref.startswith("cs_"):
            return await self._session(order.provider_ref)
        window: SessionListParamsCreated = {
            "gte": _epoch(order.created_at) - 300,
            "lte": _epoch(order.expires_at) + 60,
        }
        found = [
            s
            async for s in self._sessions(window)
            if s.get("client_reference_id") == order.order_no
        ]
        found.sort(key=lambda s: (session_state(s) == "paid", s.get("created", 0)), reverse=True)
        return found[0] if found else None

    async def query(self, order: OrderRef) -> Payment | None:
        session = await self._order_session(order)
        if session is None:
            return None
        return self._reported(session, await self.own_account())

    @staticmethod
    def _reported(session: Mapping[str, Any], merchant: str) -> Payment:
        try:
            return _payment(session, merchant, session_state(session), None)
        except NotifyRefused as e:
            raise ProviderError(
                f"Stripe 的 Checkout Session {session.get('id')} 无法读取：{e.reason}"
            ) from None

    async def refund(self, order: OrderRef, amount: int, refund_no: str, reason: str) -> Refund:
        session = await self._order_session(order)
        intent = _object_id(session.get("payment_intent")) if session is not None else None
        if intent is None:
            raise ProviderError("退款失败：该订单在 Stripe 没有已付款的 PaymentIntent")
        refund = await self._call(
            "退款",
            self.client.v1.refunds.create_async(
                {
                    "payment_intent": intent,
                    "amount": amount,
                    # Stripe's own ``reason`` is a short list of words; ours is the operator's.
                    "metadata": {
                        "order_no": order.order_no,
                        "refund_no": refund_no,
                        "reason": reason[:500],
                    },
                },
                # A refund sent again (after a timeout) is the same refund.
                {"idempotency_key": refund_no},
            ),
        )
        if refund.status == "succeeded":
            return Refund(refund_no, refund.id, "done")
        if refund.status in ("pending", "requires_action"):
            return Refund(refund_no, refund.id, "pending")
        raise ProviderError(f"退款失败：Stripe 退款 {refund.id} 的状态为 {refund.status}")

    async def close(self, order: OrderRef) -> None:
        session = await self._order_session(order)
        if session is None or session.get("status") == "expired":
            return
        try:
            await self.client.v1.checkout.sessions.expire_async(session["id"])
            return
        except stripe.InvalidRequestError as e:
            refused = _refusal("关闭 Checkout Session", e)
        except stripe.StripeError as e:
            raise _refusal("关闭 Checkout Session", e) from None
        # Refused: it may have expired or been paid meanwhile.
        now = await self._session(session["id"])
        if now is not None and now.get("status") == "expired":
            return
        if now is not None and now.get("status") == "complete":
            raise ProviderError("关闭 Checkout Session 失败：付款人已完成支付")
        raise refused

    async def daily(self, day: date, tz: str) -> list[Payment] | None:
        """The sessions created on ``day`` (the site's time zone) that Stripe says are
        paid. A session paid after midnight counts on the day it was made."""
        start, end = day_in_utc(day, tz)
        created: SessionListParamsCreated = {"gte": _epoch(start), "lt": _epoch(end)}
        merchant = await self.own_account()
        return [
            self._reported(session, merchant)
            async for session in self._sessions(created, status="complete")
            if session.get("client_reference_id") and session_state(session) == "paid"
        ]


def _named(body: bytes) -> str | None:
    """The order an unverified event names, if it names one readably (for the operator's
    page of that order; nothing is believed of it)."""
    try:
        reference = json.loads(body)["data"]["object"]["client_reference_id"]
    except (ValueError, KeyError, TypeError):
        return None
    return reference if isinstance(reference, str) else None
