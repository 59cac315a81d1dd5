from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base, UtcDateTime, utcnow
from shengtu.models.accounts import ID


class Channel(Base):
    """One upstream account: a protocol at a base URL, with keys, serving catalog models."""

    __tablename__ = "channel"
    # Tasks name the channel that took them: an id is never handed out twice.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    protocol: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str] = mapped_column(String(512))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    key_rps: Mapped[float] = mapped_column(Float, default=15.0)
    key_inflight: Mapped[int] = mapped_column(Integer, default=0)
    timeout_seconds: Mapped[float] = mapped_column(Float, default=30.0)
    cost_per_picture: Mapped[Decimal] = mapped_column(Numeric(12, 4), default=Decimal(0))
    uncertain_submit: Mapped[str] = mapped_column(String(16), default="fail")
    uncertain_count: Mapped[int] = mapped_column(Integer, default=0)
    late_count: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ChannelKey(Base):
    __tablename__ = "channel_key"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channel.id", ondelete="CASCADE"))
    sealed: Mapped[str] = mapped_column(Text)
    hint: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The breaker: failures in a row; while open_until is ahead no task goes here; once it
    # has passed, one worker claims the probe by moving it on; a success closes it.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    open_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    cooldown_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    last_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ChannelModel(Base):
    """A catalog model a channel serves, under the upstream's own name and parameters."""

    __tablename__ = "channel_model"
    __table_args__ = (UniqueConstraint("channel_id", "model_name"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channel.id", ondelete="CASCADE"))
    model_name: Mapped[str] = mapped_column(String(64), index=True)
    upstream_model: Mapped[str] = mapped_column(String(64))
    upstream_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # This upstream's field names and spellings of the model's choices, where they differ
    # from the model's own ({choice: {"upstream": field, "map": {value: spelling}}}).
    param_map: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # How the cost per picture follows the choices (a shengtu.pricing.rules rule over the
    # channel's cost_per_picture).
    cost_rule: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class TaskAttempt(Base):
    """One try at handing a task to an upstream: shown to admins, never to users."""

    __tablename__ = "task_attempt"
    # The breaker's window and the hour's and day's figures read by key and by channel.
    __table_args__ = (
        Index("ix_task_attempt_key_started", "key_id", "started_at"),
        Index("ix_task_attempt_channel_started", "channel_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("ai_task.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # accepted | failed (certainly no job) | refused (the task) | key_rejected | uncertain
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime)
