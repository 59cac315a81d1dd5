from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base, UtcDateTime, utcnow
from shengtu.models.accounts import ID


class SafetyWord(Base):
    """One entry of the operator's word lists and its tier: block, replace or review."""

    __tablename__ = "safety_word"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    word: Mapped[str] = mapped_column(String(64))
    # The word as the matcher sees it (safety/words.py fold): two entries never share one.
    folded: Mapped[str] = mapped_column(String(255), index=True)
    tier: Mapped[str] = mapped_column(String(8))
    note: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class SafetyEvent(Base):
    """A prompt the check caught: blocked (no task), replaced or flagged (its task). A
    flagged one waits in the operator's review queue (``decision`` null) until approved
    or denied."""

    __tablename__ = "safety_event"
    __table_args__ = (
        Index("ix_safety_event_tier_decision", "tier", "decision", "id"),
        Index("ix_safety_event_user_id", "user_id", "id"),
        # /admin/stats counts a window's events.
        Index("ix_safety_event_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The strictest tier among the hits: what happened to the request.
    tier: Mapped[str] = mapped_column(String(8))
    task_no: Mapped[str | None] = mapped_column(String(40), nullable=True)
    prompt: Mapped[str] = mapped_column(Text)
    hits: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    decision: Mapped[str | None] = mapped_column(String(8), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
