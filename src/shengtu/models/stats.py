"""The stats rollup: closed hours of ended tasks, summed, so that a month's figures are
read from a few thousand rows instead of a million tasks."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Integer, Numeric, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base, UtcDateTime
from shengtu.models.accounts import ID

# Upper bounds (seconds) of the time-to-result histogram; one more bucket holds the rest.
LATENCY_BOUNDS = (2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)
LATENCY_COLUMNS = tuple(f"lat_{i}" for i in range(len(LATENCY_BOUNDS) + 1))


class StatsHour(Base):
    """Tasks that ended in one UTC hour, by model and channel (0: the settings' upstream)."""

    __tablename__ = "stats_hour"
    __table_args__ = (UniqueConstraint("hour", "model_name", "channel_id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    hour: Mapped[datetime] = mapped_column(UtcDateTime)
    model_name: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[int] = mapped_column(Integer)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    # Of the failed, those an upstream refused for their content.
    moderated: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    charged: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[Decimal] = mapped_column(Numeric(16, 4), default=Decimal(0))
    lat_0: Mapped[int] = mapped_column(Integer, default=0)
    lat_1: Mapped[int] = mapped_column(Integer, default=0)
    lat_2: Mapped[int] = mapped_column(Integer, default=0)
    lat_3: Mapped[int] = mapped_column(Integer, default=0)
    lat_4: Mapped[int] = mapped_column(Integer, default=0)
    lat_5: Mapped[int] = mapped_column(Integer, default=0)
    lat_6: Mapped[int] = mapped_column(Integer, default=0)
    lat_7: Mapped[int] = mapped_column(Integer, default=0)
    lat_8: Mapped[int] = mapped_column(Integer, default=0)
    lat_9: Mapped[int] = mapped_column(Integer, default=0)
    lat_10: Mapped[int] = mapped_column(Integer, default=0)
    lat_11: Mapped[int] = mapped_column(Integer, default=0)
    lat_12: Mapped[int] = mapped_column(Integer, default=0)
    lat_13: Mapped[int] = mapped_column(Integer, default=0)


class StatsUserHour(Base):
    """Tasks that ended in one UTC hour, by user (for top users)."""

    __tablename__ = "stats_user_hour"
    __table_args__ = (UniqueConstraint("hour", "user_id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    hour: Mapped[datetime] = mapped_column(UtcDateTime)
    user_id: Mapped[int] = mapped_column(BigInteger)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    charged: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)


class StatsUserDay(Base):
    """The hours of one UTC day of ``stats_user_hour``, summed: a month's top users are
    read from about 30 rows a user instead of 720."""

    __tablename__ = "stats_user_day"
    __table_args__ = (UniqueConstraint("day", "user_id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    day: Mapped[datetime] = mapped_column(UtcDateTime)
    user_id: Mapped[int] = mapped_column(BigInteger)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    charged: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)


class StatsState(Base):
    """How far the rollup reaches: every hour before ``rolled_to`` is in the tables above."""

    __tablename__ = "stats_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rolled_to: Mapped[datetime] = mapped_column(UtcDateTime)
