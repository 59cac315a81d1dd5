"""The audit's reads see one moment even while writers commit between them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from shengtu.config import Settings
from shengtu.db import Database
from shengtu.migrate import upgrade
from tests.databases import ScratchDatabase

INSERT = text(
    "INSERT INTO users"
    " (username, password_hash, role, is_active, auth_epoch, auth_nonce, created_at)"
    " VALUES (:name, 'x', 'user', TRUE, 0, :name, '2025-01-01')"
)


def test_snapshot_does_not_see_a_commit_made_during_it(
    tmp_path: Path, fresh_database: ScratchDatabase
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=fresh_database.url)
    upgrade(settings)
    db = Database(settings.resolved_database_url)

    async def run() -> tuple[int, int]:
        async with db.write() as s:
            await s.execute(INSERT, {"name": "a"})
        async with db.snapshot() as snap:
            first = (await snap.execute(text("SELECT count(*) FROM users"))).scalar_one()
            async with db.write() as s:
                await s.execute(INSERT, {"name": "b"})
            second = (await snap.execute(text("SELECT count(*) FROM users"))).scalar_one()
        await db.dispose()
        return first, second

    assert asyncio.run(run()) == (1, 1)
