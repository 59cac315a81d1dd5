"""The prompt check's word lists and what it caught

Revision ID: 0016
Revises: 0015

``safety_word``: the operator's entries, each with its tier (block, replace, review) and
its folded form. ``safety_event``: each prompt the check caught, blocked or let through
masked or flagged; a flagged one waits for the operator's decision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shengtu.db

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "safety_word",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("word", sa.String(length=64), nullable=False),
        sa.Column("folded", sa.String(length=255), nullable=False),
        sa.Column("tier", sa.String(length=8), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=True),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.Column("updated_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_word")),
    )
    op.create_index(op.f("ix_safety_word_folded"), "safety_word", ["folded"])
    op.create_table(
        "safety_event",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("tier", sa.String(length=8), nullable=False),
        sa.Column("task_no", sa.String(length=40), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("hits", sa.JSON(), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", shengtu.db.UtcDateTime(), nullable=True),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_safety_event_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safety_event")),
    )
    op.create_index("ix_safety_event_tier_decision", "safety_event", ["tier", "decision", "id"])
    op.create_index("ix_safety_event_user_id", "safety_event", ["user_id", "id"])
    op.create_index("ix_safety_event_created_at", "safety_event", ["created_at"])


def downgrade() -> None:
    op.drop_table("safety_event")
    op.drop_table("safety_word")
