"""The ledger under every interleaving Hypothesis can find: grants, submits, completions,
failures, cancels and two workers racing for one task, across several users."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import select

from shengtu.assembly import build_context
from shengtu.config import Settings
from shengtu.db import utcnow
from shengtu.errors import Conflict, InsufficientPoints, TooManyRequests
from shengtu.ledger_audit import service as ledger_audit
from shengtu.migrate import upgrade
from shengtu.models.points import PointsAccount
from shengtu.models.tasks import ACTIVE, AiTask, Status
from shengtu.points import service as points
from shengtu.tasks import service as tasks
from shengtu.tasks.machine import move
from tests.chaos import report

LONG = os.environ.get("SHENGTU_CHAOS") == "1"
USERS = 3
COST = {"sc_soraimg_text_1x1": 30, "sc_soraimg_img2img_1x1": 35, "four-up": 20}
# A model whose tasks ask for up to four pictures and may deliver fewer.
MULTI = "four-up"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database with the users in it, copied for every example."""
    from shengtu.accounts.service import create_user
    from shengtu.db import Database

    folder = tmp_path_factory.mktemp("ledger-template")
    settings = Settings(data_dir=folder)
    upgrade(settings)

    async def users() -> None:
        from shengtu.models.catalog import PointsConfig

        db = Database(settings.resolved_database_url)
        for i in range(USERS):
            await create_user(db, f"user{i}", "password-123")
        async with db.write() as session:
            session.add(
                PointsConfig(
                    model_name=MULTI,
                    description="四张",
                    points_cost=COST[MULTI],
                    task_type="text_to_image",
                    provider="suchuang",
                    upstream_model="image_gpt",
                    upstream_params={},
                    params={"maxN": 4},
                    price_rule={},
                    enabled=True,
                    sort_order=50,
                )
            )
        await db.dispose()

    asyncio.run(users())
    return folder / "shengtu.db"


class LedgerMachine(RuleBasedStateMachine):
    template: Path
    workdir: Path

    @initialize()
    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        folder = self.workdir / f"run-{uuid.uuid4().hex}"
        folder.mkdir()
        shutil.copy(self.template, folder / "shengtu.db")
        self.ctx = build_context(
            Settings(data_dir=folder, max_inflight_tasks=0, max_inflight_per_api_key=0)
        )
        self.users = list(range(1, USERS + 1))
        self.expected = dict.fromkeys(self.users, 0)
        self.open_tasks: list[str] = []
        type(self).examples += 1

    def teardown(self) -> None:
        if hasattr(self, "ctx"):
            self.run(self.ctx.aclose())
        if hasattr(self, "loop"):
            self.loop.close()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _task(self, task_no: str) -> AiTask:
        async with self.ctx.db.read() as session:
            task = await session.scalar(select(AiTask).where(AiTask.task_no == task_no))
        assert task is not None
        return task

    examples = 0
    steps = 0
    submitted = 0

    @rule(user=st.integers(0, USERS - 1), amount=st.integers(1, 300))
    def grant(self, user: int, amount: int) -> None:
        async def go() -> None:
            async with self.ctx.db.write() as session:
                await points.grant(session, self.users[user], amount)

        self.run(go())
        self.expected[self.users[user]] += amount

    @rule(
        user=st.integers(0, USERS - 1),
        model=st.sampled_from(sorted(COST)),
        pictures=st.integers(1, 4),
    )
    def submit(self, user: int, model: str, pictures: int) -> None:
        uid = self.users[user]
        # A public address literal: no DNS lookup in a loop of thousands of steps.
        image = "https://93.184.216.34/a.png" if "img2img" in model else None
        n = pictures if model == MULTI else 1
        request = tasks.SubmitInput(uid, None, model, "一只猫", image, n=n)
        price = COST[model] * n
        try:
            detail = self.run(tasks.submit(self.ctx, request))
        except InsufficientPoints:
            assert self.expected[uid] < price
            return
        except TooManyRequests:
            return
        assert self.expected[uid] >= price
        self.expected[uid] -= price
        type(self).submitted += 1
        self.open_tasks.append(detail.taskNo)

    def _finish(
        self, index: int, target: Status, *, stale: AiTask | None = None, short: int = 0
    ) -> bool:
        """``short``: pictures fewer than asked a completion delivers (at least one)."""
        task_no = self.open_tasks[index % len(self.open_tasks)]
        delivered: dict[str, int] = {}

        async def go() -> bool:
            task = stale or await self._task(task_no)
            if task.status not in ACTIVE:
                return False
            async with self.ctx.db.write() as session:
                if target is Status.COMPLETED and task.status == Status.CREATED:
                    # A worker first has the upstream accept it.
                    queued = await move(session, task, Status.QUEUED, lease_owner=None)
                    if queued is None:
                        return False
                    task = queued
                if target is Status.COMPLETED:
                    delivered["n"] = max(1, task.pictures - short)
                    moved = await move(
                        session, task, target, lease_owner=None, delivered=delivered["n"]
                    )
                else:
                    moved = await move(session, task, target, lease_owner=None)
            return moved is not None

        won = bool(self.run(go()))
        if won:
            task = self.run(self._task(task_no))
            if target is Status.FAILED:
                self.expected[task.user_id] += task.points_cost
            else:
                missing = task.pictures - delivered["n"]
                self.expected[task.user_id] += task.points_cost // task.pictures * missing
            self.open_tasks.remove(task_no)
        return won

    @precondition(lambda self: self.open_tasks)
    @rule(index=st.integers(0, 1000), short=st.integers(0, 3))
    def complete(self, index: int, short: int) -> None:
        self._finish(index, Status.COMPLETED, short=short)

    @precondition(lambda self: self.open_tasks)
    @rule(index=st.integers(0, 1000))
    def fail(self, index: int) -> None:
        self._finish(index, Status.FAILED)

    @precondition(lambda self: self.open_tasks)
    @rule(index=st.integers(0, 1000))
    def cancel(self, index: int) -> None:
        task_no = self.open_tasks[index % len(self.open_tasks)]
        task = self.run(self._task(task_no))
        try:
            self.run(tasks.cancel(self.ctx, task.user_id, task_no))
        except Conflict:
            return
        self.expected[task.user_id] += task.points_cost
        self.open_tasks.remove(task_no)

    @precondition(lambda self: self.open_tasks)
    @rule(index=st.integers(0, 1000), first=st.sampled_from([Status.COMPLETED, Status.FAILED]))
    def two_workers_race(self, index: int, first: Status) -> None:
        """Both read the task, then both write: exactly one move may win."""
        task_no = self.open_tasks[index % len(self.open_tasks)]
        snapshot = self.run(self._task(task_no))
        if snapshot.status == Status.CREATED:
            return
        second = Status.FAILED if first is Status.COMPLETED else Status.COMPLETED
        won_first = self._finish(index, first, stale=snapshot, short=1)
        if won_first:
            assert task_no not in self.open_tasks
            self.open_tasks.append(task_no)  # let the loser try on the same index
            lost = self._finish(self.open_tasks.index(task_no), second, stale=snapshot, short=1)
            assert not lost, "two workers both moved one task"
            if task_no in self.open_tasks:
                self.open_tasks.remove(task_no)

    @invariant()
    def ledger_holds(self) -> None:
        if not hasattr(self, "ctx"):
            return
        type(self).steps += 1

        async def go() -> None:
            async with self.ctx.db.snapshot() as session:
                checks = await ledger_audit.audit(session, utcnow() - timedelta(hours=1))
                balances = dict(
                    (await session.execute(select(PointsAccount.user_id, PointsAccount.balance)))
                    .tuples()
                    .all()
                )
            for check in checks:
                assert check.ok, (check.name, check.violations)
            assert balances == self.expected

        self.run(go())


@pytest.mark.timeout(1800 if LONG else 300)
def test_ledger_state_machine(template: Path, tmp_path: Path) -> None:
    LedgerMachine.template = template
    LedgerMachine.workdir = tmp_path
    machine = LedgerMachine.TestCase
    machine.settings = settings(
        max_examples=150 if LONG else 25,
        stateful_step_count=50 if LONG else 25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    machine().runTest()
    report(
        "ledger state machine (hypothesis)",
        cases=LedgerMachine.steps,
        tasks=LedgerMachine.submitted,
    )
