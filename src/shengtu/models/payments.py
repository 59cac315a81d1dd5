"""Top-ups paid online (issue 24): the orders, every notify a provider sent, the operator's
methods (keys sealed), tiers and settings. The rules live in :mod:`shengtu.payments`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base, UtcDateTime, utcnow
from shengtu.models.accounts import ID

# pending → paid (credited once) → refunding (the points taken, the provider asked) →
# refunded, or back to paid if the provider refused; pending → expired (still paid if the
# money comes late) | closed (by the operator). Only pending and expired orders can be paid.
ORDER_STATUSES = ("pending", "paid", "expired", "closed", "refunding", "refunded")
PAYABLE = ("pending", "expired")
# The orders whose money came and whose points were credited (a refund may be under way).
CREDITED = ("paid", "refunding", "refunded")

# What became of a notify: it credited the order; it was a repeat of a credited one; its
# signature or body was refused; it verified but did not match the order (merchant,
# amount, currency); it named no order of ours.
NOTIFY_VERDICTS = (
    "credited",
    "duplicate",
    "refused",
    "mismatch",
    "unknown_order",
    "pending",
    "ignored",
)

# A kept notify's body (capped by the notify route): MySQL's TEXT holds 64 KiB.
BODY = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


class PaymentOrder(Base):
    """One top-up. Its number is the ``task_no`` of its ``topup`` ledger entry, so the
    ledger's unique (task_no, kind) refuses a second credit of one order."""

    __tablename__ = "payment_order"
    __table_args__ = (
        # The query job's scan: pending orders whose next question is due.
        Index("ix_payment_order_due", "status", "next_check_at"),
        Index("ix_payment_order_user", "user_id", "id"),
        Index("ix_payment_order_paid_at", "paid_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    order_no: Mapped[str] = mapped_column(String(40), unique=True)
    # None once the user is deleted: the order stays for the books.
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units (fen, cents)
    currency: Mapped[str] = mapped_column(String(3))
    points: Mapped[int] = mapped_column(BigInteger)
    bonus: Mapped[int] = mapped_column(BigInteger, default=0)
    method: Mapped[str] = mapped_column(String(32))  # payment_method.key
    kind: Mapped[str] = mapped_column(String(16))  # the provider's kind at the time
    status: Mapped[str] = mapped_column(String(16), default="pending")
    trade_no: Mapped[str | None] = mapped_column(String(128), nullable=True)
    provider_ref: Mapped[str | None] = mapped_column(String(255), nullable=True)
    checkout_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    checkout_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # How it was found paid: notify | query | manual.
    paid_via: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # The query job's back-off: when to ask the provider next (None: never again), and
    # how many times it has asked.
    next_check_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    checks: Mapped[int] = mapped_column(Integer, default=0)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_points: Mapped[int] = mapped_column(BigInteger, default=0)
    # The refund's attempts (each its own refund number and ledger entries), the reason
    # the operator gave, when the latest was asked, and what is unsettled about it.
    refund_tries: Mapped[int] = mapped_column(Integer, default=0)
    refund_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    refund_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    refund_note: Mapped[str | None] = mapped_column(String(255), nullable=True)


class PaymentNotify(Base):
    """A notify as it came, whatever became of it: headers and body with every secret
    (signatures, keys, Authorization) masked, and the verdict."""

    __tablename__ = "payment_notify"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    method: Mapped[str] = mapped_column(String(32))
    order_no: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    http_method: Mapped[str] = mapped_column(String(8))
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[str | None] = mapped_column(BODY, nullable=True)
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(255), nullable=True)


class PaymentMethod(Base):
    """A way to pay the operator offers: a provider kind with its settings. Secrets are
    sealed with SHENGTU_SECRET_KEY (like channel keys), the rest kept as given."""

    __tablename__ = "payment_method"

    key: Mapped[str] = mapped_column(String(32), primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # {field: sealed value} for the kind's secret fields.
    sealed: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class PaymentTier(Base):
    """A top-up the operator offers: pay ``amount``, get ``points`` and ``bonus``."""

    __tablename__ = "payment_tier"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    bonus: Mapped[int] = mapped_column(BigInteger, default=0)
    label: Mapped[str] = mapped_column(String(64), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class PaymentSettings(Base):
    """The operator's payment settings: one row (id 1), the defaults until saved."""

    __tablename__ = "payment_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    # Points for one unit of the currency (1 yuan, 1 dollar) of a custom amount.
    points_per_unit: Mapped[int] = mapped_column(Integer, default=100)
    min_amount: Mapped[int] = mapped_column(BigInteger, default=100)
    max_amount: Mapped[int] = mapped_column(BigInteger, default=100_000)
    order_minutes: Mapped[int] = mapped_column(Integer, default=30)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
