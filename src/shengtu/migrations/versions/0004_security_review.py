"""Security review: ids never reused, a per-user token nonce, redemption codes, upload use
and result retention

Revision ID: 0004
Revises: 0003

On SQLite, ``users`` and ``api_keys`` are rebuilt with AUTOINCREMENT (SQLite otherwise hands
a deleted top id to the next row). The rebuild copies the rows and keeps their ids; the
tables that point at ``users`` keep pointing at it (foreign keys are not enforced on the
migration's connection, so dropping the old table deletes nothing). MariaDB and PostgreSQL
never hand an id out twice.
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shengtu.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        # Off outside a transaction only; the migration's connection never turned it on,
        # and this keeps it so even where a driver would: the rebuild must not cascade.
        op.execute("PRAGMA foreign_keys=OFF")

    with op.batch_alter_table(
        "users",
        recreate="always" if sqlite else "auto",
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch_op:
        batch_op.add_column(sa.Column("auth_nonce", sa.String(length=32), nullable=True))
    users = sa.table("users", sa.column("id", ID), sa.column("auth_nonce", sa.String(32)))
    for (user_id,) in bind.execute(sa.select(users.c.id)).all():
        bind.execute(
            users.update().where(users.c.id == user_id).values(auth_nonce=secrets.token_hex(16))
        )
    # SQLite rebuilds the table again for this: it must keep AUTOINCREMENT.
    with op.batch_alter_table("users", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.alter_column("auth_nonce", existing_type=sa.String(length=32), nullable=False)

    if sqlite:
        with op.batch_alter_table(
            "api_keys", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass

    op.create_table(
        "redeem_code",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("batch", sa.String(length=64), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=True),
        sa.Column("expires_at", shengtu.db.UtcDateTime(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("used_by", ID, nullable=True),
        sa.Column("used_at", shengtu.db.UtcDateTime(), nullable=True),
        sa.Column("created_at", shengtu.db.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["used_by"],
            ["users.id"],
            name=op.f("fk_redeem_code_used_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redeem_code")),
        sa.UniqueConstraint("code", name=op.f("uq_redeem_code_code")),
    )
    op.create_index(op.f("ix_redeem_code_batch"), "redeem_code", ["batch"])

    with op.batch_alter_table("stored_file") as batch_op:
        batch_op.add_column(sa.Column("used_at", shengtu.db.UtcDateTime(), nullable=True))
    op.create_index("ix_stored_file_user_created", "stored_file", ["user_id", "created_at"])
    op.create_index("ix_stored_file_unused", "stored_file", ["used_at", "created_at"])

    with op.batch_alter_table("ai_task") as batch_op:
        batch_op.add_column(sa.Column("result_expired_at", shengtu.db.UtcDateTime(), nullable=True))
    op.create_index("ix_ai_task_completed", "ai_task", ["completed_at"])


def downgrade() -> None:
    op.drop_index("ix_ai_task_completed", table_name="ai_task")
    with op.batch_alter_table("ai_task") as batch_op:
        batch_op.drop_column("result_expired_at")
    op.drop_index("ix_stored_file_unused", table_name="stored_file")
    op.drop_index("ix_stored_file_user_created", table_name="stored_file")
    with op.batch_alter_table("stored_file") as batch_op:
        batch_op.drop_column("used_at")
    op.drop_index(op.f("ix_redeem_code_batch"), table_name="redeem_code")
    op.drop_table("redeem_code")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("auth_nonce")
