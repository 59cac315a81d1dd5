from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shengtu.db import Base
from shengtu.models.accounts import ID


class PointsConfig(Base):
    """The spec's ``points_config``: one row a sellable model. ``task_type`` is the
    spec's ``text_to_image`` or ``image_to_image``, or ``both``: a reference image makes
    the task image-to-image."""

    __tablename__ = "points_config"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255))
    points_cost: Mapped[int] = mapped_column(Integer)
    task_type: Mapped[str] = mapped_column(String(32))
    aspect_ratio: Mapped[str | None] = mapped_column(String(16), nullable=True)
    provider: Mapped[str] = mapped_column(String(32))
    upstream_model: Mapped[str] = mapped_column(String(64))
    upstream_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    # The values it offers (shengtu.pricing.parameters) and how its price follows them
    # (shengtu.pricing.rules); empty: one price, nothing to choose (the spec's rows).
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=dict)
    price_rule: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=dict)
