"""V9: add the suchuang image models (the spec's points_config rows)

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RATIOS = [("auto", "自动比例"), ("1x1", "正方形(1:1)"), ("2x3", "竖图(2:3)"), ("3x2", "横图(3:2)")]


def _rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    kinds = [
        ("text", "文生图", 30, "text_to_image"),
        ("img2img", "图生图", 35, "image_to_image"),
    ]
    for k_index, (slug, label, cost, task_type) in enumerate(kinds):
        for r_index, (suffix, ratio_label) in enumerate(_RATIOS):
            ratio = suffix.replace("x", ":")
            rows.append(
                {
                    "model_name": f"sc_soraimg_{slug}_{suffix}",
                    "description": f"速创生图 {label}-{ratio_label}",
                    "points_cost": cost,
                    "task_type": task_type,
                    "aspect_ratio": ratio,
                    "provider": "suchuang",
                    "upstream_model": "image_gpt",
                    "upstream_params": {"size": ratio},
                    "enabled": True,
                    "sort_order": k_index * 10 + r_index,
                }
            )
    return rows


def upgrade() -> None:
    table = sa.table(
        "points_config",
        sa.column("model_name", sa.String),
        sa.column("description", sa.String),
        sa.column("points_cost", sa.Integer),
        sa.column("task_type", sa.String),
        sa.column("aspect_ratio", sa.String),
        sa.column("provider", sa.String),
        sa.column("upstream_model", sa.String),
        sa.column("upstream_params", sa.JSON),
        sa.column("enabled", sa.Boolean),
        sa.column("sort_order", sa.Integer),
    )
    op.bulk_insert(table, _rows())


def downgrade() -> None:
    op.execute("DELETE FROM points_config WHERE model_name LIKE 'sc_soraimg_%'")
