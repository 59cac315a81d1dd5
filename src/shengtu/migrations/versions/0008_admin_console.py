"""The operator's console: audit log, price groups, API key controls, stats rollup

Revision ID: 0008
Revises: 0007

Every admin action is logged; users belong to a price group (``default``, ×1); API keys
may carry a quota, an expiry, allowed models and client addresses; closed hours of ended
tasks are summed into ``stats_hour``, ``stats_user_hour`` and ``stats_user_day`` (reaching ``stats_state``, made by the first rollup).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shengtu.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_name", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_created", ["created_at"], unique=False)

    op.create_table(
        "stats_hour",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("hour", shengtu.db.UtcDateTime(), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("charged", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Numeric(precision=16, scale=4), nullable=False),
        sa.Column("lat_0", sa.Integer(), nullable=False),
        sa.Column("lat_1", sa.Integer(), nullable=False),
        sa.Column("lat_2", sa.Integer(), nullable=False),
        sa.Column("lat_3", sa.Integer(), nullable=False),
        sa.Column("lat_4", sa.Integer(), nullable=False),
        sa.Column("lat_5", sa.Integer(), nullable=False),
        sa.Column("lat_6", sa.Integer(), nullable=False),
        sa.Column("lat_7", sa.Integer(), nullable=False),
        sa.Column("lat_8", sa.Integer(), nullable=False),
        sa.Column("lat_9", sa.Integer(), nullable=False),
        sa.Column("lat_10", sa.Integer(), nullable=False),
        sa.Column("lat_11", sa.Integer(), nullable=False),
        sa.Column("lat_12", sa.Integer(), nullable=False),
        sa.Column("lat_13", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_hour")),
        sa.UniqueConstraint("hour", "model_name", "channel_id", name=op.f("uq_stats_hour_hour")),
    )
    op.create_table(
        "stats_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rolled_to", shengtu.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_state")),
    )
    op.create_table(
        "stats_user_hour",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("hour", shengtu.db.UtcDateTime(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("charged", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_user_hour")),
        sa.UniqueConstraint("hour", "user_id", name=op.f("uq_stats_user_hour_hour")),
    )
    op.create_table(
        "stats_user_day",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("day", shengtu.db.UtcDateTime(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("charged", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stats_user_day")),
        sa.UniqueConstraint("day", "user_id", name=op.f("uq_stats_user_day_day")),
    )
    op.create_table(
        "user_group",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("multiplier", sa.Numeric(precision=8, scale=4), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_group")),
        sa.UniqueConstraint("name", name=op.f("uq_user_group_name")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quota_points", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("spent_points", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("expires_at", shengtu.db.UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column("allowed_models", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("allowed_cidrs", sa.JSON(), nullable=True))

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("group_name", sa.String(length=32), nullable=False, server_default="default")
        )

    with op.batch_alter_table("ai_task", schema=None) as batch_op:
        batch_op.create_index("ix_ai_task_upstream_id", ["upstream_id"], unique=False)

    now = sa.func.current_timestamp()
    groups = sa.table(
        "user_group",
        sa.column("name"),
        sa.column("multiplier"),
        sa.column("description"),
        sa.column("created_at", shengtu.db.UtcDateTime()),
    )
    op.execute(
        groups.insert().values(name="default", multiplier=1, description="默认分组", created_at=now)
    )


def downgrade() -> None:
    with op.batch_alter_table("ai_task", schema=None) as batch_op:
        batch_op.drop_index("ix_ai_task_upstream_id")

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("group_name")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("allowed_cidrs")
        batch_op.drop_column("allowed_models")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("spent_points")
        batch_op.drop_column("quota_points")

    op.drop_table("user_group")
    op.drop_table("stats_user_day")
    op.drop_table("stats_user_hour")
    op.drop_table("stats_state")
    op.drop_table("stats_hour")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_created")

    op.drop_table("audit_log")
