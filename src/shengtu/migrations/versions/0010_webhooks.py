"""Webhooks: endpoints, the outbox and its attempts, per-task callbacks

Revision ID: 0010
Revises: 0009

A user's endpoints (secret sealed with SHENGTU_SECRET_KEY); one outbox row per event and
URL, written with the event; every delivery attempt; the secret that signs callbacks of
tasks submitted with ``callbackUrl`` (kept on the task).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shengtu.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_endpoint",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("sealed_secret", sa.String(length=512), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=255), nullable=True),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_webhook_endpoint_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoint")),
    )
    op.create_index(op.f("ix_webhook_endpoint_user_id"), "webhook_endpoint", ["user_id"])
    op.create_table(
        "webhook_callback_secret",
        sa.Column("user_id", ID, autoincrement=False, nullable=False),
        sa.Column("sealed_secret", sa.String(length=512), nullable=False),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_webhook_callback_secret_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_webhook_callback_secret")),
    )
    op.create_table(
        "webhook_message",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("msg_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("endpoint_id", ID, nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("task_no", sa.String(length=64), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.Column("locked_until", shengtu.db.UtcDateTime(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("delivered_at", shengtu.db.UtcDateTime(), nullable=True),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoint.id"],
            name=op.f("fk_webhook_message_endpoint_id_webhook_endpoint"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_webhook_message_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_message")),
        sa.UniqueConstraint("msg_id", name=op.f("uq_webhook_message_msg_id")),
    )
    op.create_index("ix_webhook_message_due", "webhook_message", ["status", "next_attempt_at"])
    op.create_index(op.f("ix_webhook_message_user_id"), "webhook_message", ["user_id"])
    op.create_index(op.f("ix_webhook_message_endpoint_id"), "webhook_message", ["endpoint_id"])
    op.create_table(
        "webhook_attempt",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("attempted_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("response", sa.String(length=500), nullable=True),
        sa.Column("error", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["webhook_message.id"],
            name=op.f("fk_webhook_attempt_message_id_webhook_message"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempt")),
    )
    op.create_index(op.f("ix_webhook_attempt_message_id"), "webhook_attempt", ["message_id"])
    with op.batch_alter_table("ai_task") as batch_op:
        batch_op.add_column(sa.Column("callback_url", sa.String(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ai_task") as batch_op:
        batch_op.drop_column("callback_url")
    op.drop_index(op.f("ix_webhook_attempt_message_id"), table_name="webhook_attempt")
    op.drop_table("webhook_attempt")
    op.drop_index(op.f("ix_webhook_message_endpoint_id"), table_name="webhook_message")
    op.drop_index(op.f("ix_webhook_message_user_id"), table_name="webhook_message")
    op.drop_index("ix_webhook_message_due", table_name="webhook_message")
    op.drop_table("webhook_message")
    op.drop_table("webhook_callback_secret")
    op.drop_index(op.f("ix_webhook_endpoint_user_id"), table_name="webhook_endpoint")
    op.drop_table("webhook_endpoint")
