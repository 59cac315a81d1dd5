"""Webhook fairness: a lane per user, limits on tests and redeliveries

Revision ID: 0011
Revises: 0010

A lane row per user whose lock every dispatcher takes to claim that user's messages
(caps on deliveries in flight per user and per endpoint, across processes; users served
in turn); the cell-rate state of an endpoint's (and the callbacks') tests and
redeliveries; the request id that made or resent a message; an index for a user's due
messages.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shengtu.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_lane",
        sa.Column("user_id", ID, autoincrement=False, nullable=False),
        sa.Column("served_at", shengtu.db.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_webhook_lane_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_webhook_lane")),
    )
    with op.batch_alter_table("webhook_endpoint") as batch_op:
        batch_op.add_column(sa.Column("manual_tat", shengtu.db.UtcDateTime(), nullable=True))
    with op.batch_alter_table("webhook_callback_secret") as batch_op:
        batch_op.add_column(sa.Column("manual_tat", shengtu.db.UtcDateTime(), nullable=True))
    with op.batch_alter_table("webhook_message") as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_webhook_message_user_due", "webhook_message", ["user_id", "status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_message_user_due", table_name="webhook_message")
    with op.batch_alter_table("webhook_message") as batch_op:
        batch_op.drop_column("request_id")
    with op.batch_alter_table("webhook_callback_secret") as batch_op:
        batch_op.drop_column("manual_tat")
    with op.batch_alter_table("webhook_endpoint") as batch_op:
        batch_op.drop_column("manual_tat")
    op.drop_table("webhook_lane")
