"""What every payment provider does for Shengtu, whatever its protocol: start a payment,
verify what it notifies, say what it knows of an order, refund, and answer its notifies
the way it expects. The orders, the ledger and the rules (credited once, only when the
notify verifies and its merchant, order number, amount and currency equal the order's)
live in :mod:`shengtu.payments.service`; a provider only speaks its protocol.

Amounts are integers in the currency's minor unit (fen, cents) everywhere in Shengtu; a
provider converts to and from its protocol's spelling ("1.00" yuan, 100 fen, 100 cents).
A provider touches no database (the import contracts say so).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar, Literal

import httpx

PaymentState = Literal["paid", "pending", "closed", "refunded"]


@dataclass(frozen=True)
class OrderRef:
    """What a provider is told of one of our orders."""

    order_no: str
    amount: int  # minor units
    currency: str  # ISO 4217, upper case: "CNY", "USD"
    subject: str  # shown to the payer: "生图积分充值 1000 积分"
    created_at: datetime
    expires_at: datetime
    # The provider's own reference once known (a Stripe Checkout Session's id, 易支付's
    # trade_no): some protocols query by it.
    provider_ref: str | None = None
    client_ip: str | None = None


@dataclass(frozen=True)
class Urls:
    """Where the provider sends its notifies (server to server) and the payer's browser
    after paying."""

    notify: str
    back: str


@dataclass(frozen=True)
class Checkout:
    """How the payer pays: their browser goes to ``url`` (``redirect``), or the console
    shows ``url`` as a QR code to scan with the provider's app (``qr``)."""

    kind: Literal["redirect", "qr"]
    url: str
    provider_ref: str | None = None


@dataclass(frozen=True)
class Payment:
    """What the provider says of an order, from a verified notify or a query. The service
    believes it only when ``merchant``, ``order_no``, ``amount`` and ``currency`` equal the
    order's."""

    order_no: str
    merchant: str
    amount: int  # minor units
    currency: str
    state: PaymentState
    trade_no: str | None = None  # the provider's number for the payment
    paid_at: datetime | None = None


@dataclass(frozen=True)
class Notify:
    """A notify as it came in: the service keeps it (redacted) whatever becomes of it."""

    method: str  # "GET" | "POST"
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Answer:
    """The HTTP answer a notify gets, as its protocol asks (``success``, 204, ...)."""

    status: int
    body: bytes = b""
    media_type: str = "text/plain"


@dataclass(frozen=True)
class Refund:
    refund_no: str  # ours, sent to the provider so a retried refund is one refund
    provider_ref: str | None
    state: Literal["done", "pending"]


@dataclass(frozen=True)
class ConfigField:
    """One setting of a method, for the operator's form. A ``secret`` is sealed at rest,
    never answered (only a mask), never logged."""

    name: str
    label: str
    secret: bool = False
    required: bool = True
    default: str = ""
    multiline: bool = False  # a PEM key


class NotifyRefused(Exception):
    """The notify is not believed: a bad signature, a malformed body, a stale timestamp.
    ``reason`` (Chinese) is kept with the notify for the operator, and ``order_no`` where
    the notify names one readably (so the order's page lists it)."""

    def __init__(self, reason: str, *, order_no: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.order_no = order_no


class NotifyIgnored(Exception):
    """The notify is verified as the provider's, but says nothing we act on (an event of
    another kind than we take): answered received, so the provider stops sending it, kept
    for the operator, and nothing moves."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProviderError(Exception):
    """The provider refused or could not be reached; ``reason`` (Chinese) says which."""

    def __init__(self, reason: str, *, certain: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        # False: the provider may have acted (a timeout): ask it again before retrying.
        self.certain = certain


class PaymentProvider(ABC):
    """One protocol. Built from the method's settings (secrets already opened) and an HTTP
    client the service owns; ``config["gateway"]`` is the provider's base URL, which a
    test or ``make run`` points at the provider's double."""

    kind: ClassVar[str]  # "epay" | "alipay" | "wechat" | "stripe"
    label: ClassVar[str]  # "易支付", "支付宝", "微信支付", "Stripe"
    fields: ClassVar[tuple[ConfigField, ...]]
    # Header and field names whose values a kept notify must not show.
    redact: ClassVar[frozenset[str]] = frozenset()
    # A refund asked again under its number refunds once (Alipay's out_request_no, WeChat
    # Pay's out_refund_no, Stripe's Idempotency-Key), for refund_repeat_hours (None: for
    # good): a refund whose answer never came may be asked again. Not so where the
    # protocol has no refund number (易支付): the operator looks and says.
    refund_repeatable: ClassVar[bool] = True
    refund_repeat_hours: ClassVar[float | None] = None
    # The currencies the provider takes (None: any).
    currencies: ClassVar[frozenset[str] | None] = frozenset({"CNY"})

    def __init__(self, config: Mapping[str, str], http: httpx.AsyncClient) -> None:
        self.config = dict(config)
        self.http = http

    @property
    @abstractmethod
    def merchant(self) -> str:
        """The merchant id every believed :class:`Payment` must carry."""

    @abstractmethod
    async def create(self, order: OrderRef, urls: Urls) -> Checkout:
        """Start a payment of ``order``. Raises :class:`ProviderError`."""

    @abstractmethod
    async def verify(self, notify: Notify) -> Payment:
        """The payment a notify reports, once its signature (and timestamp, where the
        protocol has one) verifies. Raises :class:`NotifyRefused` otherwise."""

    @abstractmethod
    def answer(self, believed: bool) -> Answer:
        """What the provider expects back: believed (credited now or before) or not (it
        should try again later, or give up)."""

    @abstractmethod
    async def query(self, order: OrderRef) -> Payment | None:
        """What the provider knows of ``order`` now; None if it knows no such order.
        Raises :class:`ProviderError` when it cannot say."""

    @abstractmethod
    async def refund(self, order: OrderRef, amount: int, refund_no: str, reason: str) -> Refund:
        """Give ``amount`` of a paid order back to the payer. Raises :class:`ProviderError`."""

    async def close(self, order: OrderRef) -> None:  # noqa: B027 - optional
        """Tell the provider an expired order can no longer be paid, where it can be told."""

    async def daily(self, day: date, tz: str) -> list[Payment] | None:
        """The payments the provider reports for ``day`` in the site's time zone ``tz``, for
        reconciliation; None when its API cannot say. A provider that bills by its own
        calendar day (Alipay's and WeChat Pay's are Beijing's) reports that day."""
        return None
