"""Cancels passed upstream, and late results

Revision ID: 0007
Revises: 0006

A task remembers a user's cancel for an upstream that can cancel; a failed task whose
upstream job ran on is watched for a late picture; channels count their late results.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shengtu.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ai_task") as batch:
        batch.add_column(sa.Column("cancel_requested_at", shengtu.db.UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("late_until", shengtu.db.UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("late_next_at", shengtu.db.UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("late_result_url", sa.String(length=1024), nullable=True))
    op.create_index("ix_ai_task_late_next", "ai_task", ["late_next_at"])
    with op.batch_alter_table("channel") as batch:
        batch.add_column(sa.Column("late_count", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("channel") as batch:
        batch.drop_column("late_count")
    op.drop_index("ix_ai_task_late_next", table_name="ai_task")
    with op.batch_alter_table("ai_task") as batch:
        batch.drop_column("late_result_url")
        batch.drop_column("late_next_at")
        batch.drop_column("late_until")
        batch.drop_column("cancel_requested_at")
