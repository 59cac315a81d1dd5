"""Per-channel figures over the last hour and day

Revision ID: 0006
Revises: 0005

The channel's success rate and latencies read its attempts by channel and time.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_task_attempt_channel_started", "task_attempt", ["channel_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_task_attempt_channel_started", table_name="task_attempt")
