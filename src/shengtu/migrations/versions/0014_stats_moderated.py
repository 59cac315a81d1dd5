"""The stats count the tasks an upstream refused for their content apart

Revision ID: 0014
Revises: 0013

Of each hour's failed tasks of a model and channel, those whose upstream refused the
content (a moderation), so an operator tells a refusal from an outage. Hours rolled up
before this count none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stats_hour") as batch_op:
        batch_op.add_column(
            sa.Column("moderated", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("stats_hour") as batch_op:
        batch_op.drop_column("moderated")
