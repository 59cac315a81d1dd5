from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base, UtcDateTime, utcnow

ID = BigInteger().with_variant(Integer(), "sqlite")


def new_user_nonce() -> str:
    """A user's token nonce: a token whose nonce is not its user's current one is refused."""
    return secrets.token_hex(16)


class User(Base):
    __tablename__ = "users"
    # SQLite hands a deleted top id out again without AUTOINCREMENT.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped on password change: tokens carry it, so older tokens stop working.
    auth_epoch: Mapped[int] = mapped_column(Integer, default=0)
    # Carried by every token of this user and by no other user's (security.TokenClaims).
    auth_nonce: Mapped[str] = mapped_column(String(32), default=new_user_nonce)
    # The price group (groups.UserGroup.name): what this user pays is a model's points × its
    # multiplier.
    group_name: Mapped[str] = mapped_column(String(32), default="default")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Controls, each optional: what the key may spend in all (its tasks' charges net of
    # refunds, kept in spent_points by the charge and the refund), until when, on which
    # models, and from which client addresses (CIDR).
    quota_points: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    spent_points: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    allowed_cidrs: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
