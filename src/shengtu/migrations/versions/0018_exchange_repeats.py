"""A kept poll answer counts its repeats

Revision ID: 0018
Revises: 0017

A poll whose answer is the task's last one again is not kept as a row of its own: the
row that holds the answer counts it (``repeats``) and says when it last came
(``last_at``). Numbered 0016 as 0015 is another branch's; whichever merges second points
its ``down_revision`` at the other.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shengtu.db

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upstream_exchange") as batch:
        batch.add_column(
            sa.Column("repeats", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("last_at", shengtu.db.UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upstream_exchange") as batch:
        batch.drop_column("last_at")
        batch.drop_column("repeats")
