"""Indexes for counting a user's and an API key's tasks in flight

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_ai_task_user_status", "ai_task", ["user_id", "status"])
    op.create_index("ix_ai_task_key_status", "ai_task", ["api_key_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_ai_task_key_status", table_name="ai_task")
    op.drop_index("ix_ai_task_user_status", table_name="ai_task")
