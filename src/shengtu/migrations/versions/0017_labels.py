"""What labels a task's stored pictures carry

Revision ID: 0017
Revises: 0016

``ai_task.labels``: {"implicit": true, "visible": bool} once a picture is stored (the AIGC
metadata of GB 45438-2025 always, the visible "AI生成" on the operator's models); NULL on
tasks stored before labels, whose pictures carry none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
# 0017 is the moderation's, when it has one: the lead renumbers at the merge.
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ai_task") as batch_op:
        batch_op.add_column(sa.Column("labels", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ai_task") as batch_op:
        batch_op.drop_column("labels")
