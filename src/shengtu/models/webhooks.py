from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base, UtcDateTime, utcnow
from shengtu.models.accounts import ID


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
    # Tests and redeliveries to it are a cell rate (GCRA): the theoretical arrival time.
    manual_tat: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class CallbackSecret(Base):
    """The secret that signs a user's per-task callbacks (``callbackUrl``)."""

    __tablename__ = "webhook_callback_secret"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    sealed_secret: Mapped[str] = mapped_column(String(512))
    # Redeliveries of callbacks, limited as an endpoint's are (see WebhookEndpoint).
    manual_tat: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookLane(Base):
    """A user's turn at the dispatchers. A dispatcher claims a user's messages only under
    this row's lock (``FOR UPDATE SKIP LOCKED``; SQLite's writers take turns anyway), so
    the caps on a user's and an endpoint's deliveries in flight hold across processes;
    and users are served least recently served first, so one user's backlog waits
    behind another user's fresh message, not the other way round."""

    __tablename__ = "webhook_lane"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    # When a dispatcher last claimed for this user; None: never.
    served_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class WebhookMessage(Base):
    """One event for one URL: the outbox row, written in the transaction of the event."""

    __tablename__ = "webhook_message"
    __table_args__ = (
        Index("ix_webhook_message_due", "status", "next_attempt_at"),
        # A user's due and in-flight messages, read under the user's lane lock.
        Index("ix_webhook_message_user_due", "user_id", "status", "next_attempt_at"),
    )

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
    # The request that made it (a test) or last sent it again (a redelivery), for the logs.
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
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
