from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base, UtcDateTime, utcnow
from shengtu.models.accounts import ID

# "undelivered": a completed task's pictures the upstream did not make, given back.
# "topup": a paid order's points (task_no = the order's number, so once per order);
# "topup_refund": the points a refund of an order took back, and "topup_restore" them
# given back when the provider refused that refund (task_no: the order's number for its
# first attempt, ``{order}-{n}`` for the n-th).
LEDGER_KINDS = (
    "grant",
    "consume",
    "refund",
    "undelivered",
    "adjust",
    "expire",
    "redeem",
    "topup",
    "topup_refund",
    "topup_restore",
)


class PointsAccount(Base):
    __tablename__ = "points_account"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    expire_time: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0)


class PointsLedger(Base):
    """Append-only: a row is never updated or deleted."""

    __tablename__ = "points_ledger"
    __table_args__ = (
        # The database itself refuses a second charge or a second refund of a task.
        UniqueConstraint("task_no", "kind", name="uq_points_ledger_task_kind"),
        Index("ix_points_ledger_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    delta: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    task_no: Mapped[str | None] = mapped_column(String(40), nullable=True)
    note: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
