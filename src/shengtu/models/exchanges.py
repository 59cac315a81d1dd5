from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base, UtcDateTime, utcnow
from shengtu.models.accounts import ID

# A body as kept (SHENGTU_EXCHANGE_BODY_BYTES, up to 1 MiB): MySQL's TEXT holds 64 KiB.
BODY = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


class UpstreamExchange(Base):
    """One request sent to an upstream about a task, and its answer or why there was none
    (shengtu.providers.exchanges): keys and signatures masked, bodies capped. Shown to
    operators, never to users; deleted after SHENGTU_EXCHANGE_RETENTION_DAYS, and with
    its task (a deleted user's prompts go with them)."""

    __tablename__ = "upstream_exchange"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("ai_task.id", ondelete="CASCADE"), index=True)
    task_no: Mapped[str] = mapped_column(String(40))
    channel_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    protocol: Mapped[str] = mapped_column(String(32))
    # submit | poll | cancel | late_poll
    step: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(String(2048))
    request_headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request_body: Mapped[str | None] = mapped_column(BODY, nullable=True)
    # None: no answer came (``error`` says why).
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    response_body: Mapped[str | None] = mapped_column(BODY, nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    elapsed_ms: Mapped[float] = mapped_column(Float)
    # When the request went out; the sweep deletes by it.
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    # A poll's answer that came again on the task's next polls: how many more times, and
    # when last (shengtu.exchanges.service); 0 and None for any other.
    repeats: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
