"""A submit hands its new tasks to the worker of its own process, leased in the charging
transaction (shengtu.tasks.handoff); with no room they are left to any worker's claim,
and a refused submit gives its room back. A process killed before stepping them is
tests/e2e/test_crash.py's embedded case."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from shengtu.assembly import build_context
from shengtu.config import Settings
from shengtu.db import utcnow
from shengtu.errors import InsufficientPoints
from shengtu.models.accounts import User as UserRow
from shengtu.models.tasks import AiTask
from shengtu.tasks import service as tasks
from shengtu.tasks.handoff import Lease
from shengtu.tasks.worker import Worker
from tests.support import Platform

MODEL = "sc_soraimg_text_1x1"  # 30 points


class Recorder:
    """A taker with room for ``room`` tasks that keeps what it is given."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.reserved = 0
        self.taken: list[AiTask] = []
        # Short: the served worker carries the tasks on once it runs out.
        self.lease = Lease("test-taker", utcnow() + timedelta(seconds=4))

    def reserve(self, count: int) -> Lease | None:
        if self.reserved + count > self.room:
            return None
        self.reserved += count
        return self.lease

    def release(self, count: int) -> None:
        self.reserved -= count

    def take(self, given: Sequence[AiTask]) -> None:
        self.reserved -= len(given)
        self.room -= len(given)
        self.taken.extend(given)


def test_a_submit_leases_its_tasks_to_this_process_worker(platform: Platform) -> None:
    user = platform.new_user(points=100)

    async def go() -> None:
        ctx = build_context(platform.settings(), role="api")
        await ctx.start()
        taker = Recorder(room=2)
        ctx.taker = taker
        try:
            async with ctx.db.read() as session:
                user_id = await session.scalar(
                    select(UserRow.id).where(UserRow.username == user.name)
                )
            assert user_id is not None

            def request() -> tasks.SubmitInput:
                return tasks.SubmitInput(user_id, None, MODEL, "交接测试", None)

            handed = await tasks.submit_many(ctx, request(), 2)
            # No room left: the next is left to the claims of any worker.
            left = await tasks.submit(ctx, request())
            async with ctx.db.read() as session:
                rows = {
                    t.task_no: t
                    for t in await session.scalars(
                        select(AiTask).where(
                            AiTask.task_no.in_([d.taskNo for d in [*handed, left]])
                        )
                    )
                }
            assert [t.task_no for t in taker.taken] == [d.taskNo for d in handed]
            for detail in handed:
                row = rows[detail.taskNo]
                # Leased in the charging transaction, and not due before the lease ends.
                assert row.lease_owner == "test-taker"
                assert row.lease_until == taker.lease.until == row.next_run_at
                assert row.status == "created"
            assert rows[left.taskNo].lease_owner != "test-taker"
            assert taker.reserved == 0

            # 10 points left: refused, and the room it held is given back.
            taker.room = 4
            with pytest.raises(InsufficientPoints):
                await tasks.submit_many(ctx, request(), 1)
            assert taker.reserved == 0
            assert len(taker.taken) == 2
        finally:
            ctx.taker = None
            await ctx.aclose()

    asyncio.run(go())
    # The handed tasks' lease runs out and the served worker carries them on: every task
    # ends, and the ledger is exact.
    records = user.client.get("/user/ai/tasks/list").json()["data"]["records"]
    assert len(records) == 3
    for record in records:
        assert user.wait(record["taskNo"], timeout=60)["status"] == "completed"
    assert user.balance() == 10


def test_a_worker_reserves_only_the_room_it_has(tmp_path: Path) -> None:
    async def go() -> None:
        ctx = build_context(Settings(data_dir=tmp_path, worker_concurrency=3))
        try:
            worker = Worker(ctx)
            first = worker.reserve(2)
            assert first is not None and first.owner == worker.owner
            assert first.until > utcnow()
            assert worker.reserve(2) is None
            worker.release(2)
            assert worker.reserve(3) is not None
            worker.release(3)
            worker.stop()
            assert worker.reserve(1) is None  # a stopping worker takes nothing new
        finally:
            await ctx.aclose()

    asyncio.run(go())
