from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base, UtcDateTime, utcnow
from shengtu.models.accounts import ID


class IdempotencyKey(Base):
    """A client's ``Idempotency-Key``: what its first request was, the tasks it charged
    for and, once answered, the answer every retry gets."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the route and the request's parameters.
    fingerprint: Mapped[str] = mapped_column(String(64))
    # Written in the transaction that charged for them.
    task_nos: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    # While a request holds the key; a later one may take it over (a crashed process).
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
