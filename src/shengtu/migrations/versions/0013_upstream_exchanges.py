"""Every upstream exchange of a task, kept for the operator

Revision ID: 0013
Revises: 0012

One row per request sent to an upstream about a task (submit, poll, cancel, late poll):
the request (keys and signatures masked) and the answer or why there was none, bodies
capped. Deleted with the task, and by the sweep after SHENGTU_EXCHANGE_RETENTION_DAYS.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import shengtu.db

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BODY = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "upstream_exchange",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("task_no", sa.String(length=40), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=True),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("protocol", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("request_headers", sa.JSON(), nullable=False),
        sa.Column("request_body", BODY, nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("response_headers", sa.JSON(), nullable=False),
        sa.Column("response_body", BODY, nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("elapsed_ms", sa.Float(), nullable=False),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["ai_task.id"],
            name=op.f("fk_upstream_exchange_task_id_ai_task"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upstream_exchange")),
    )
    op.create_index(op.f("ix_upstream_exchange_task_id"), "upstream_exchange", ["task_id"])
    op.create_index(op.f("ix_upstream_exchange_created_at"), "upstream_exchange", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_upstream_exchange_created_at"), table_name="upstream_exchange")
    op.drop_index(op.f("ix_upstream_exchange_task_id"), table_name="upstream_exchange")
    op.drop_table("upstream_exchange")
