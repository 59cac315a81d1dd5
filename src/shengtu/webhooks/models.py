from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.accounts.models import ID
from shengtu.db import Base, UtcDateTime, utcnow


class WebhookEndpoint(Base):
    """A user's URL that hears of their tasks' endings, signed with its own secret."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The signing secret (``whsec_…``), sealed with SHENGTU_SECRET_KEY.
    sealed_secret: Mapped[str] = mapped_column(String(512))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class CallbackSecret(Base):
    """The secret that signs a user's per-task callbacks (``callbackUrl``)."""

    __tablename__ = "webhook_callback_secret"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    sealed_secret: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookMessage(Base):
    """One event for one URL: the outbox row, written in the transaction of the event."""

    __tablename__ = "webhook_message"
    __table_args__ = (Index("ix_webhook_message_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    # ``webhook-id``: the same on every attempt, so a receiver can drop repeats.
    msg_id: Mapped[str] = mapped_column(String(40), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # None for a task's own callbackUrl.
    endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), nullable=True, index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    event: Mapped[str] = mapped_column(String(32))
    task_no: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Fixed at the first attempt: every retry sends the same bytes.
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    # pending → delivered, or failed once every retry is spent.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Held by a dispatcher while it delivers; a dead one's hold runs out.
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempt"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_message.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    # The start of the receiver's answer, or why there was none.
    response: Mapped[str | None] = mapped_column(String(500), nullable=True)
    error: Mapped[str | None] = mapped_column(String(255), nullable=True)
