"""A refund in two steps: the points taken, then the provider asked

Revision ID: 0019
Revises: 0018

A refund is committed (the order ``refunding``, its points taken) before its provider
is asked, and settled after: ``refunded`` when the provider says so, back to ``paid``
(the points given back) when it refuses. An answer that never came leaves it
``refunding``, with why in ``refund_note``, until it is asked again or the operator
settles it. ``refund_tries`` numbers the attempts (each has its own refund number at the
provider and its own ledger entries).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shengtu.db

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payment_order") as batch:
        batch.add_column(
            sa.Column("refund_tries", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("refund_reason", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("refund_at", shengtu.db.UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("refund_note", sa.String(length=255), nullable=True))
    op.execute("UPDATE payment_order SET refund_tries = 1 WHERE status = 'refunded'")


def downgrade() -> None:
    with op.batch_alter_table("payment_order") as batch:
        batch.drop_column("refund_note")
        batch.drop_column("refund_at")
        batch.drop_column("refund_reason")
        batch.drop_column("refund_tries")
