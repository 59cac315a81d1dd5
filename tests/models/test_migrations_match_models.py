"""The migrations build exactly the tables the models describe."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import shengtu.models
from tests.support import base_env, cli


def test_migrations_match_the_models(tmp_path: Path) -> None:
    cli(base_env(tmp_path), "migrate")
    engine = create_engine(f"sqlite:///{tmp_path / 'shengtu.db'}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), shengtu.models.Base.metadata)
    engine.dispose()
    assert diff == [], diff
