"""The payments API's bodies and answers (/work/notes/payments.md): amounts in minor
units, camelCase, times in the site's time zone."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shengtu.api.inputs import RequestBody
from shengtu.models.payments import PaymentNotify, PaymentOrder
from shengtu.timefmt import fmt

OrderStatus = Literal["pending", "paid", "expired", "closed", "refunding", "refunded"]
MAX_AMOUNT = 100_000_000_00  # a hundred million in major units: beyond any top-up
MethodKey = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")


class TierOut(BaseModel):
    id: int
    amount: int
    points: int
    bonus: int
    label: str


class MethodChoice(BaseModel):
    key: str
    label: str
    kind: str


class PayOptions(BaseModel):
    currency: str
    # Amounts are in minor units: 10 ** minorDigits of them make a unit (2 for CNY).
    minorDigits: int
    pointsPerUnit: int
    minAmount: int
    maxAmount: int
    tiers: list[TierOut]
    methods: list[MethodChoice]


class OrderCreate(RequestBody):
    tierId: int | None = Field(default=None, ge=1, le=2**62)
    amount: int | None = Field(default=None, ge=1, le=MAX_AMOUNT)
    method: str = MethodKey


class CheckoutOut(BaseModel):
    kind: Literal["redirect", "qr"]
    url: str


class OrderOut(BaseModel):
    orderNo: str
    status: OrderStatus
    amount: int
    currency: str
    points: int
    bonus: int
    method: str
    methodLabel: str
    checkout: CheckoutOut | None
    createdAt: str
    paidAt: str | None
    expiresAt: str
    refundedAmount: int
    refundedPoints: int


class OrderPage(BaseModel):
    records: list[OrderOut]
    total: int


class NotifyOut(BaseModel):
    id: int
    receivedAt: str
    method: str
    headers: dict[str, Any]
    body: str | None
    verdict: str
    reason: str | None


class NotifyRecord(NotifyOut):
    methodKey: str
    orderNo: str | None


class NotifyPage(BaseModel):
    records: list[NotifyRecord]
    total: int


class AdminOrderOut(OrderOut):
    userId: int | None
    username: str | None
    tradeNo: str | None
    paidVia: str | None
    # How many notifies were kept for it (the order's own page lists them).
    notifies: int


class AdminOrderPage(BaseModel):
    records: list[AdminOrderOut]
    total: int


class AdminOrderDetail(OrderOut):
    userId: int | None
    username: str | None
    tradeNo: str | None
    paidVia: str | None
    notifies: list[NotifyOut]
    # The refund's latest attempt: its reason, when the provider was asked, what is not
    # settled about it, and whether asking again is safe (the protocol's refund number).
    refundTries: int
    refundReason: str | None
    refundAt: str | None
    refundNote: str | None
    refundRepeatable: bool


class SettingsBody(RequestBody):
    currency: str = Field(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")
    pointsPerUnit: int = Field(ge=1, le=1_000_000)
    minAmount: int = Field(ge=1, le=MAX_AMOUNT)
    maxAmount: int = Field(ge=1, le=MAX_AMOUNT)
    orderMinutes: int = Field(ge=1, le=7 * 24 * 60)


class SettingsOut(SettingsBody):
    minorDigits: int  # of the currency: 10 ** minorDigits minor units make a unit
    # Not set here (SHENGTU_TIMEZONE): the zone of the daily report's days.
    timezone: str


class TierBody(RequestBody):
    amount: int = Field(ge=1, le=MAX_AMOUNT)
    points: int = Field(ge=1, le=1_000_000_000_000)
    bonus: int = Field(default=0, ge=0, le=1_000_000_000_000)
    label: str = Field(default="", max_length=64)
    enabled: bool = True


class AdminTierOut(TierOut):
    enabled: bool


class FieldOut(BaseModel):
    name: str
    label: str
    secret: bool
    required: bool
    default: str
    multiline: bool


class KindOut(BaseModel):
    kind: str
    label: str
    fields: list[FieldOut]


class MethodOut(BaseModel):
    key: str
    kind: str
    label: str
    enabled: bool
    config: dict[str, Any]
    fields: list[FieldOut]


class MethodBody(RequestBody):
    kind: str = Field(min_length=1, max_length=16)
    label: str = Field(min_length=1, max_length=64)
    enabled: bool = False
    config: dict[str, str] = Field(default_factory=dict, max_length=32)


class CompleteBody(RequestBody):
    reason: str = Field(min_length=1, max_length=255)


class RefundBody(RequestBody):
    amount: int | None = Field(default=None, ge=1, le=MAX_AMOUNT)
    reason: str = Field(min_length=1, max_length=255)


class RefundSettleBody(RequestBody):
    # What the provider's own records say of a refund whose answer never came.
    done: bool
    reason: str = Field(min_length=1, max_length=255)


class Money(BaseModel):
    ordersPaid: int
    amount: int


class Difference(BaseModel):
    orderNo: str
    ours: int | None
    theirs: int | None


class MethodReport(BaseModel):
    method: str
    ordersPaid: int
    amount: int
    provider: Money | None
    differences: list[Difference]


class DailyReport(BaseModel):
    day: str
    methods: list[MethodReport]


def order_out(order: PaymentOrder, labels: dict[str, str], tz: str) -> OrderOut:
    return OrderOut(**_order_fields(order, labels, tz))


def _order_fields(order: PaymentOrder, labels: dict[str, str], tz: str) -> dict[str, Any]:
    checkout = None
    # A checkout is only of use while the order can be paid.
    if (
        order.checkout_url
        and order.checkout_kind in ("redirect", "qr")
        and order.status == "pending"
    ):
        checkout = CheckoutOut(kind=order.checkout_kind, url=order.checkout_url)
    return {
        "orderNo": order.order_no,
        "status": order.status,
        "amount": order.amount,
        "currency": order.currency,
        "points": order.points,
        "bonus": order.bonus,
        "method": order.method,
        "methodLabel": labels.get(order.method, order.method),
        "checkout": checkout,
        "createdAt": fmt(order.created_at, tz) or "",
        "paidAt": fmt(order.paid_at, tz),
        "expiresAt": fmt(order.expires_at, tz) or "",
        "refundedAmount": order.refunded_amount,
        "refundedPoints": order.refunded_points,
    }


def admin_order_out(
    order: PaymentOrder, labels: dict[str, str], tz: str, username: str | None, notifies: int
) -> AdminOrderOut:
    return AdminOrderOut(
        **_order_fields(order, labels, tz),
        userId=order.user_id,
        username=username,
        tradeNo=order.trade_no,
        paidVia=order.paid_via,
        notifies=notifies,
    )


def notify_out(notify: PaymentNotify, tz: str) -> NotifyOut:
    return NotifyOut(
        id=notify.id,
        receivedAt=fmt(notify.received_at, tz) or "",
        method=notify.http_method,
        headers=dict(notify.headers or {}),
        body=notify.body,
        verdict=notify.verdict,
        reason=notify.reason,
    )


def notify_record(notify: PaymentNotify, tz: str) -> NotifyRecord:
    return NotifyRecord(
        **notify_out(notify, tz).model_dump(), methodKey=notify.method, orderNo=notify.order_no
    )


def admin_order_detail(
    order: PaymentOrder,
    labels: dict[str, str],
    tz: str,
    username: str | None,
    notifies: list[PaymentNotify],
    refund_repeatable: bool,
) -> AdminOrderDetail:
    return AdminOrderDetail(
        **_order_fields(order, labels, tz),
        userId=order.user_id,
        username=username,
        tradeNo=order.trade_no,
        paidVia=order.paid_via,
        notifies=[notify_out(n, tz) for n in notifies],
        refundTries=order.refund_tries,
        refundReason=order.refund_reason,
        refundAt=fmt(order.refund_at, tz),
        refundNote=order.refund_note,
        refundRepeatable=refund_repeatable,
    )
