"""Model parameters and price rules; tasks record what they chose, were charged and made

Revision ID: 0012
Revises: 0011

A catalog model offers values for its choices (``params``) and prices them (``price_rule``);
a task records the values it chose, what its price was worked out from, how many pictures
it asked for and how many it delivered, every picture it delivered, what it cost the
operator and the upstream's usage figures; a channel's model maps the choices to its
upstream's fields and prices its cost by them. Every existing row keeps its meaning: no
parameters and an empty rule are the one fixed price of before, a task of one picture.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("points_config") as batch_op:
        batch_op.add_column(sa.Column("params", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("price_rule", sa.JSON(), nullable=True))
    with op.batch_alter_table("ai_task") as batch_op:
        batch_op.add_column(
            sa.Column("pictures", sa.Integer(), nullable=False, server_default=sa.text("1"))
        )
        batch_op.add_column(sa.Column("delivered", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("params", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("pricing", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("results", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("cost", sa.Numeric(12, 4), nullable=True))
        batch_op.add_column(sa.Column("upstream_usage", sa.JSON(), nullable=True))
    with op.batch_alter_table("channel_model") as batch_op:
        batch_op.add_column(sa.Column("param_map", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("cost_rule", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_model") as batch_op:
        batch_op.drop_column("cost_rule")
        batch_op.drop_column("param_map")
    with op.batch_alter_table("ai_task") as batch_op:
        for column in (
            "upstream_usage",
            "cost",
            "results",
            "pricing",
            "params",
            "delivered",
            "pictures",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("points_config") as batch_op:
        batch_op.drop_column("price_rule")
        batch_op.drop_column("params")
