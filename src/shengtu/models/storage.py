from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base, UtcDateTime, utcnow
from shengtu.models.accounts import ID


class StoredFile(Base):
    """A file a user uploaded (reference images); results live on their task row."""

    __tablename__ = "stored_file"
    __table_args__ = (
        # The day's quota (a user's uploads since midnight) and the sweep (unused, old).
        Index("ix_stored_file_user_created", "user_id", "created_at"),
        Index("ix_stored_file_unused", "used_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Set by the first task that references the file; an upload never used is swept.
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
