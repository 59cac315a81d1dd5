"""Upstream channels: several accounts and keys per model

Revision ID: 0005
Revises: 0004

Channels, their sealed keys (with each key's breaker) and the catalog models each serves;
every attempt at handing a task upstream; a task records the channel
and key that accepted it, and is polled through that key.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shengtu.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "channel",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=32), nullable=False),
        sa.Column("base_url", sa.String(length=512), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("key_rps", sa.Float(), nullable=False),
        sa.Column("key_inflight", sa.Integer(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("cost_per_picture", sa.Numeric(precision=12, scale=4), nullable=False),
        sa.Column("uncertain_submit", sa.String(length=16), nullable=False),
        sa.Column("uncertain_count", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.Column("updated_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel")),
        sa.UniqueConstraint("name", name=op.f("uq_channel_name")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "channel_key",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("hint", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=255), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("open_until", shengtu.db.UtcDateTime(), nullable=True),
        sa.Column("cooldown_seconds", sa.Float(), nullable=False),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("last_error_at", shengtu.db.UtcDateTime(), nullable=True),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channel.id"],
            name=op.f("fk_channel_key_channel_id_channel"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_key")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "channel_model",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("upstream_model", sa.String(length=64), nullable=False),
        sa.Column("upstream_params", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channel.id"],
            name=op.f("fk_channel_model_channel_id_channel"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_model")),
        sa.UniqueConstraint("channel_id", "model_name", name=op.f("uq_channel_model_channel_id")),
    )
    op.create_index(
        op.f("ix_channel_model_model_name"), "channel_model", ["model_name"], unique=False
    )
    op.create_table(
        "task_attempt",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=True),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("started_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.Column("ended_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["ai_task.id"],
            name=op.f("fk_task_attempt_task_id_ai_task"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_attempt")),
    )
    op.create_index(op.f("ix_task_attempt_task_id"), "task_attempt", ["task_id"], unique=False)
    op.create_index("ix_task_attempt_key_started", "task_attempt", ["key_id", "started_at"])
    with op.batch_alter_table("ai_task") as batch_op:
        batch_op.add_column(sa.Column("channel_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("channel_key_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_ai_task_channel_status", ["channel_id", "status"])


def downgrade() -> None:
    with op.batch_alter_table("ai_task") as batch_op:
        batch_op.drop_index("ix_ai_task_channel_status")
        batch_op.drop_column("channel_key_id")
        batch_op.drop_column("channel_id")
    op.drop_index("ix_task_attempt_key_started", table_name="task_attempt")
    op.drop_index(op.f("ix_task_attempt_task_id"), table_name="task_attempt")
    op.drop_table("task_attempt")
    op.drop_index(op.f("ix_channel_model_model_name"), table_name="channel_model")
    op.drop_table("channel_model")
    op.drop_table("channel_key")
    op.drop_table("channel")
