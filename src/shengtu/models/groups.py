from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base, UtcDateTime, utcnow
from shengtu.models.accounts import ID

DEFAULT_GROUP = "default"


class UserGroup(Base):
    """A price group: every model's points × ``multiplier`` is what its users pay."""

    __tablename__ = "user_group"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    multiplier: Mapped[Decimal] = mapped_column(Numeric(8, 4), default=Decimal(1))
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
