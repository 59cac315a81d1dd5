"""Database.transaction (statements built once, no ORM session) commits all or nothing,
and after_commit calls back only for what was committed, there and in a session."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import bindparam, func, select, update

from shengtu.accounts.service import create_user
from shengtu.config import Settings
from shengtu.db import Database, add, after_commit, run
from shengtu.migrate import upgrade
from shengtu.models.accounts import User
from shengtu.models.points import PointsLedger

_LEDGER_ROWS = select(func.count()).select_from(PointsLedger)
_ROLE = update(User).where(User.id == bindparam("who")).values(role=bindparam("new_role"))


def test_a_transaction_is_all_or_nothing_and_calls_back_after_commit(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    db = Database(settings.resolved_database_url)
    called: list[str] = []

    def ledger(note: str) -> PointsLedger:
        return PointsLedger(user_id=1, delta=5, balance_after=5, kind="grant", note=note)

    async def go() -> None:
        await create_user(db, "tx-user", "password-123")
        async with db.transaction() as tx:
            row = ledger("kept")
            await add(tx, row)
            assert row.id is not None and row.created_at is not None  # id and defaults set
            assert (await run(tx, _ROLE, {"who": 1, "new_role": "user"})).rowcount == 1
            after_commit(tx, lambda: called.append("tx committed"))
            assert called == []
        assert called == ["tx committed"]

        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await add(tx, ledger("rolled back"))
                after_commit(tx, lambda: called.append("tx rolled back"))
                raise RuntimeError("mid-way")
        assert (await db.first(_LEDGER_ROWS, {}))[0] == 1  # type: ignore[index]

        async with db.write() as session:
            await add(session, ledger("in a session"))
            after_commit(session, lambda: called.append("session committed"))
        with pytest.raises(RuntimeError):
            async with db.write() as session:
                await add(session, ledger("session rolled back"))
                after_commit(session, lambda: called.append("session rolled back"))
                raise RuntimeError("mid-way")
        assert (await db.first(_LEDGER_ROWS, {}))[0] == 2  # type: ignore[index]
        assert called == ["tx committed", "session committed"]
        await db.dispose()

    asyncio.run(go())
