from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base, UtcDateTime, utcnow
from shengtu.models.accounts import ID


class Status(StrEnum):
    CREATED = "created"  # charged, not yet accepted upstream
    QUEUED = "queued"  # accepted upstream, waiting
    PROCESSING = "processing"  # generating
    COMPLETED = "completed"  # picture stored
    FAILED = "failed"  # errorMessage set, points back


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED})
ACTIVE = (Status.CREATED, Status.QUEUED, Status.PROCESSING)
# The active statuses as SQL literals, for ``status IN (…)`` in statements built once:
# a list of values would be an expanding parameter, which ``shengtu.db.run`` compiles not.
ACTIVE_SQL: tuple[ColumnElement[str], ...] = tuple(literal_column(f"'{s.value}'") for s in ACTIVE)


class AiTask(Base):
    __tablename__ = "ai_task"
    __table_args__ = (
        Index("ix_ai_task_due", "status", "next_run_at"),
        Index("ix_ai_task_user_created", "user_id", "id"),
        Index("ix_ai_task_user_status", "user_id", "status"),
        Index("ix_ai_task_key_status", "api_key_id", "status"),
        Index("ix_ai_task_late_next", "late_next_at"),
        Index("ix_ai_task_completed", "completed_at"),
        Index("ix_ai_task_channel_status", "channel_id", "status"),
        Index("ix_ai_task_upstream_id", "upstream_id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    task_no: Mapped[str] = mapped_column(String(40), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    api_key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model_name: Mapped[str] = mapped_column(String(64))
    task_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    prompt: Mapped[str] = mapped_column(Text)
    image_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    # What the task was charged: ``pictures`` × the price of one. A failure refunds it all;
    # a completion refunds the pictures not delivered (ledger kind "undelivered").
    points_cost: Mapped[int] = mapped_column(Integer)
    pictures: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    delivered: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The values it was made with (shengtu.pricing.parameters.Chosen) and what its price
    # was worked out from (shengtu.pricing.service.Price.basis); NULL on older tasks.
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    pricing: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    result_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    result_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Every picture delivered ({"url", "key"} each; the first is result_url/result_key),
    # when the task asked for more than one.
    results: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, nullable=True)
    error_message: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    # The labels its stored pictures carry (shengtu.safety.labels): {"implicit": true,
    # "visible": bool}; NULL before any picture was stored, and on tasks older than labels.
    labels: Mapped[dict[str, bool] | None] = mapped_column(JSON, nullable=True)

    provider: Mapped[str] = mapped_column(String(32))
    # The channel and key that accepted the task (none: the upstream of the settings).
    channel_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channel_key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    upstream_model: Mapped[str] = mapped_column(String(64))
    upstream_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    upstream_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    upstream_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    upstream_result_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What the operator paid the upstream for it (the channel's cost rule × the pictures
    # delivered) and the upstream's own usage figures, where its protocol reports them.
    cost: Mapped[Decimal | None] = mapped_column(Numeric(12, 4), nullable=True)
    upstream_usage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    poll_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(512), nullable=True)

    next_run_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    deadline_at: Mapped[datetime] = mapped_column(UtcDateTime)

    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # When the retention sweep deleted the stored picture (SHENGTU_RESULT_RETENTION_DAYS).
    result_expired_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # A user asked to cancel a task an upstream that can cancel has accepted: the worker
    # passes it on, then fails the task (refunded).
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Late results: a task failed (its deadline) while its upstream job ran on; until
    # late_until the worker asks, slowly, whether the job finished after all, and keeps
    # the picture (result_key) at late_result_url. The task stays failed and refunded.
    late_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    late_next_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    late_result_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    # Where this task's own webhook goes (the submit's callbackUrl extension field).
    callback_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
