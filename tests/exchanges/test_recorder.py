"""The worker's writer of exchanges (issue 23): a database that refuses the write costs the
exchanges, never the task's step, and memory stays bounded while it is away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from shengtu.exchanges import service
from shengtu.exchanges.service import ExchangeRecorder
from shengtu.providers.exchanges import Exchange, current


class _DownDatabase:
    def __init__(self) -> None:
        self.tries = 0

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Any]:
        self.tries += 1
        raise ConnectionRefusedError("数据库不可用")
        yield  # pragma: no cover


def _exchange() -> Exchange:
    return Exchange(
        "suchuang", "GET", "http://x/", {}, None, 200, {}, "{}", None, 1.0, datetime(2026, 1, 1)
    )


def _recorder(db: Any, retention: float = 7.0) -> ExchangeRecorder:
    settings = SimpleNamespace(exchange_retention_days=retention, exchange_body_bytes=4096)
    return ExchangeRecorder(SimpleNamespace(settings=settings, db=db))  # type: ignore[arg-type]


def test_a_database_that_refuses_the_write_costs_only_the_exchanges() -> None:
    db = _DownDatabase()
    recorder = _recorder(db)
    task = SimpleNamespace(id=1, task_no="TASK-1", channel_id=None, channel_key_id=None)

    async def run() -> None:
        writer = asyncio.create_task(recorder.run())
        with recorder.recording(task, "poll", channel_id=None, key_id=None):  # type: ignore[arg-type]
            book = current()
            assert book is not None
            book.exchanges.append(_exchange())
        assert current() is None
        await asyncio.sleep(0.05)
        recorder.stop()
        await writer

    asyncio.run(run())
    assert db.tries == 1 and recorder._pending == []


def test_what_waits_for_the_database_is_bounded() -> None:
    recorder = _recorder(_DownDatabase())
    task = SimpleNamespace(id=1, task_no="TASK-1")
    for _ in range(service.MAX_PENDING + 10):
        recorder.keep(task, "poll", None, None, [_exchange()])  # type: ignore[arg-type]
    assert len(recorder._pending) == service.MAX_PENDING and recorder._dropped == 10


def test_nothing_is_recorded_at_a_retention_of_zero() -> None:
    recorder = _recorder(_DownDatabase(), retention=0)
    task = SimpleNamespace(id=1, task_no="TASK-1")
    with recorder.recording(task, "submit", channel_id=None, key_id=None):  # type: ignore[arg-type]
        assert current() is None
    assert recorder._pending == []
