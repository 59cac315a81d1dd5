"""On SQLite, a read or a whole write transaction runs without giving up the event loop.

The write lock is held for the length of a write transaction; every pass of the loop taken
inside it is a pass every other writer waits. Under load a pass is tens of milliseconds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select, update

from shengtu.config import Settings
from shengtu.db import Database
from shengtu.migrate import upgrade
from shengtu.models.accounts import User


def test_sqlite_sessions_never_yield_to_the_loop(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    db = Database(settings.resolved_database_url)
    passes = 0

    async def count_passes() -> None:
        nonlocal passes
        while True:
            passes += 1
            await asyncio.sleep(0)

    async def run() -> list[int]:
        counter = asyncio.create_task(count_passes())
        await asyncio.sleep(0)
        seen = []
        for _ in range(3):
            before = passes
            async with db.write() as session:
                await session.execute(update(User).where(User.id == 1).values(role="user"))
            async with db.read() as session:
                await session.execute(select(User.id))
            seen.append(passes - before)
        counter.cancel()
        await db.dispose()
        return seen

    assert asyncio.run(run()) == [0, 0, 0]
