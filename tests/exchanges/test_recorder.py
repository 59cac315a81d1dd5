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
    task = SimpleNamespace(
        id=1, task_no="TASK-1", channel_id=None, channel_key_id=None, poll_count=0
    )

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
    task = SimpleNamespace(id=1, task_no="TASK-1", poll_count=0)
    for _ in range(service.MAX_PENDING + 10):
        # Submits: a poll's answer that comes again would be counted, not queued.
        recorder.keep(task, "submit", None, None, [_exchange()])  # type: ignore[arg-type]
    assert len(recorder._pending) == service.MAX_PENDING and recorder._dropped == 10


def test_nothing_is_recorded_at_a_retention_of_zero() -> None:
    recorder = _recorder(_DownDatabase(), retention=0)
    task = SimpleNamespace(id=1, task_no="TASK-1", poll_count=0)
    with recorder.recording(task, "submit", channel_id=None, key_id=None):  # type: ignore[arg-type]
        assert current() is None
    assert recorder._pending == []


def _answer(body: str, at: datetime, status: int = 200) -> Exchange:
    return Exchange(
        "kling",
        "GET",
        "http://x/v1/images/generations/J1",
        {},
        None,
        status,
        {},
        body,
        None,
        1.0,
        at,
    )


def _processing(request_id: str) -> str:
    return (
        f'{{"code": 0, "message": "SUCCEED", "request_id": "{request_id}",'
        ' "data": {"task_id": "J1", "task_status": "processing"}}'
    )


def test_a_poll_answer_that_comes_again_is_counted_on_the_kept_row() -> None:
    written: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []

    async def write(_: Any, rows: list[dict[str, Any]], repeats: list[dict[str, Any]]) -> None:
        written.append((rows, repeats))

    recorder = _recorder(None)
    task = SimpleNamespace(id=7, task_no="TASK-7", poll_count=0)
    at = [datetime(2026, 1, 1, 0, 0, s) for s in range(10)]

    def poll(exchange: Exchange, step: Any = "poll") -> None:
        recorder.keep(task, step, 1, 2, [exchange])  # type: ignore[arg-type]
        task.poll_count += 1

    # The same answer three times (each with a request id of its own), then another.
    poll(_answer(_processing("r-1"), at[0]))
    poll(_answer(_processing("r-2"), at[1]))
    poll(_answer(_processing("r-3"), at[2]))
    done = '{"code": 0, "request_id": "r-4", "data": {"task_status": "succeed"}}'
    poll(_answer(done, at[3]))

    async def flush() -> None:
        original = service.write
        service.write = write  # type: ignore[assignment]
        try:
            await recorder.flush()
        finally:
            service.write = original

    asyncio.run(flush())
    ((rows, repeats),) = written
    assert [r["response_body"] for r in rows] == [_processing("r-1"), done]
    assert [r["created_at"] for r in rows] == [at[0], at[3]]
    # The first row counts the two that came again, and when the last did.
    assert repeats == [{"b_task": 7, "b_at": at[0], "b_repeats": 2, "b_last": at[2]}]


def test_an_answer_is_kept_again_when_something_came_between() -> None:
    recorder = _recorder(None)
    task = SimpleNamespace(id=8, task_no="TASK-8", poll_count=0)
    at = [datetime(2026, 1, 1, 0, 0, s) for s in range(10)]
    same = _processing("r")

    def keep(step: Any, exchange: Exchange) -> None:
        recorder.keep(task, step, 1, 2, [exchange])  # type: ignore[arg-type]

    keep("poll", _answer(same, at[0]))
    task.poll_count += 1
    # A cancel between two polls: the next poll's answer is kept anew.
    keep("cancel", _answer("{}", at[1]))
    keep("poll", _answer(same, at[2]))
    # Another worker polled the task in between (its count moved on by two).
    task.poll_count += 2
    keep("poll", _answer(same, at[3]))
    # A late poll is a step of its own, even with the answer of the last poll.
    keep("late_poll", _answer(same, at[4]))
    # An error answer is another answer.
    task.poll_count += 1
    keep("late_poll", _answer(same, at[5], status=500))
    kept = [(r["step"], r["created_at"]) for r in recorder._pending]
    assert kept == [
        ("poll", at[0]),
        ("cancel", at[1]),
        ("poll", at[2]),
        ("poll", at[3]),
        ("late_poll", at[4]),
        ("late_poll", at[5]),
    ]
    assert recorder._counts == {}


def test_a_long_run_of_one_answer_has_its_count_written_now_and_then() -> None:
    recorder = _recorder(None)
    task = SimpleNamespace(id=9, task_no="TASK-9", poll_count=0)
    first = datetime(2026, 1, 1)
    for n in range(5):
        recorder.keep(task, "poll", 1, 2, [_answer(_processing(f"r{n}"), first.replace(second=n))])  # type: ignore[arg-type]
        task.poll_count += 1
    assert len(recorder._pending) == 1 and recorder._counts == {}
    # Not before REPEATS_WRITE_GAP, looked for every SETTLE_EVERY …
    recorder._settle()
    assert recorder._counts == {}
    recorder._settled -= service.SETTLE_EVERY
    recorder._settle()
    assert recorder._counts == {}
    for run in recorder._runs.values():
        run.written_clock -= service.REPEATS_WRITE_GAP
    # … then the count so far; and at the worker's stop whatever came since.
    recorder._settled -= service.SETTLE_EVERY
    recorder._settle()
    assert recorder._counts == {(9, first): (4, first.replace(second=4))}
    recorder._counts.clear()
    recorder.keep(task, "poll", 1, 2, [_answer(_processing("r5"), first.replace(second=5))])  # type: ignore[arg-type]
    recorder._settle(everything=True)
    assert recorder._counts == {(9, first): (5, first.replace(second=5))}


def test_an_answer_whose_row_was_not_written_is_kept_again() -> None:
    db = _DownDatabase()
    recorder = _recorder(db)
    task = SimpleNamespace(id=3, task_no="TASK-3", poll_count=0)
    first, second = datetime(2026, 1, 1, 0, 0, 1), datetime(2026, 1, 1, 0, 0, 2)
    recorder.keep(task, "poll", 1, 2, [_answer(_processing("a"), first)])  # type: ignore[arg-type]
    asyncio.run(recorder.flush())
    assert db.tries == 1
    task.poll_count += 1
    # The database refused the row: the same answer again is not counted on it.
    recorder.keep(task, "poll", 1, 2, [_answer(_processing("b"), second)])  # type: ignore[arg-type]
    assert [r["created_at"] for r in recorder._pending] == [second]
