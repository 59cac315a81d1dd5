"""Top-ups paid online: orders, kept notifies, methods, tiers, settings

Revision ID: 0015
Revises: 0014

An order per top-up (its number is its ``topup`` ledger entry's task_no, so the ledger's
unique (task_no, kind) refuses a second credit); every notify a provider sent, redacted,
with its verdict; the operator's payment methods (secrets sealed with
SHENGTU_SECRET_KEY), tiers, and one row of settings.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import shengtu.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BODY = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "payment_order",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("order_no", sa.String(length=40), nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trade_no", sa.String(length=128), nullable=True),
        sa.Column("provider_ref", sa.String(length=255), nullable=True),
        sa.Column("checkout_kind", sa.String(length=16), nullable=True),
        sa.Column("checkout_url", sa.String(length=2048), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("paid_via", sa.String(length=16), nullable=True),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.Column("expires_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.Column("paid_at", shengtu.db.UtcDateTime(), nullable=True),
        sa.Column("closed_at", shengtu.db.UtcDateTime(), nullable=True),
        sa.Column("next_check_at", shengtu.db.UtcDateTime(), nullable=True),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded_points", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_payment_order_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_order")),
        sa.UniqueConstraint("order_no", name=op.f("uq_payment_order_order_no")),
    )
    op.create_index("ix_payment_order_due", "payment_order", ["status", "next_check_at"])
    op.create_index("ix_payment_order_user", "payment_order", ["user_id", "id"])
    op.create_index("ix_payment_order_paid_at", "payment_order", ["paid_at"])
    op.create_table(
        "payment_notify",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("order_no", sa.String(length=40), nullable=True),
        sa.Column("received_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.Column("http_method", sa.String(length=8), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", BODY, nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_notify")),
    )
    op.create_index(op.f("ix_payment_notify_order_no"), "payment_notify", ["order_no"])
    op.create_index(op.f("ix_payment_notify_received_at"), "payment_notify", ["received_at"])
    op.create_table(
        "payment_method",
        sa.Column("key", sa.String(length=32), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("sealed", sa.JSON(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("updated_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_payment_method")),
    )
    op.create_table(
        "payment_tier",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_tier")),
    )
    op.create_table(
        "payment_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("points_per_unit", sa.Integer(), nullable=False),
        sa.Column("min_amount", sa.BigInteger(), nullable=False),
        sa.Column("max_amount", sa.BigInteger(), nullable=False),
        sa.Column("order_minutes", sa.Integer(), nullable=False),
        sa.Column("updated_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_settings")),
    )


def downgrade() -> None:
    op.drop_table("payment_settings")
    op.drop_table("payment_tier")
    op.drop_table("payment_method")
    op.drop_index(op.f("ix_payment_notify_received_at"), table_name="payment_notify")
    op.drop_index(op.f("ix_payment_notify_order_no"), table_name="payment_notify")
    op.drop_table("payment_notify")
    op.drop_index("ix_payment_order_paid_at", table_name="payment_order")
    op.drop_index("ix_payment_order_user", table_name="payment_order")
    op.drop_index("ix_payment_order_due", table_name="payment_order")
    op.drop_table("payment_order")
