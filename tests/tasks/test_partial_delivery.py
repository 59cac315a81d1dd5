"""Charged for what was made, on every database: a task of n pictures pays n up front; one
that completes with fewer gives the missing ones back in the move that completes it, once,
however many workers race to end it. Prices follow the model's rule and the group's
multiplier at the moment of the charge, and a refund returns what was charged."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from shengtu.accounts.service import create_user
from shengtu.assembly import build_context
from shengtu.config import Settings
from shengtu.context import AppContext
from shengtu.db import utcnow
from shengtu.errors import BadRequest
from shengtu.ledger_audit import service as ledger_audit
from shengtu.migrate import upgrade
from shengtu.models.accounts import User
from shengtu.models.catalog import PointsConfig
from shengtu.models.groups import UserGroup
from shengtu.models.points import PointsAccount, PointsLedger
from shengtu.models.tasks import AiTask, Status
from shengtu.points import service as points
from shengtu.tasks import service as tasks
from shengtu.tasks.machine import move
from tests.chaos import report
from tests.databases import ScratchDatabase

MODEL = "multi-picture"
PARAMS = {
    "choices": {
        "size": {"values": ["1024x1024", "1024x1536"], "default": "1024x1024"},
        "quality": {"values": ["low", "medium", "high"], "default": "medium"},
    },
    "maxN": 4,
    "maxReferences": 2,
}
RULE = {
    "choices": {
        "size": {"1024x1536": {"times": "1.5"}},
        "quality": {"low": {"points": 10}, "high": {"points": 160}},
    },
    "perReference": 5,
}
RACERS = 200


@pytest.fixture
def ctx(tmp_path: Path, fresh_database: ScratchDatabase) -> Iterator[AppContext]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=fresh_database.url,
        max_inflight_tasks=0,
        max_inflight_per_api_key=0,
    )
    upgrade(settings)
    context = build_context(settings)
    yield context
    asyncio.run(context.aclose())


async def _setup(ctx: AppContext, *, grant: int, multiplier: str = "1") -> int:
    user = await create_user(ctx.db, f"buyer-{random.randrange(10**9)}", "password-123")
    async with ctx.db.write() as session:
        session.add(
            PointsConfig(
                model_name=MODEL,
                description="多张图片",
                points_cost=40,
                task_type="both",
                aspect_ratio=None,
                provider="suchuang",
                upstream_model="image_gpt",
                upstream_params={},
                params=PARAMS,
                price_rule=RULE,
                enabled=True,
                sort_order=0,
            )
        )
        session.add(UserGroup(name="vip", multiplier=multiplier))
        await session.flush()
        await session.execute(update(User).where(User.id == user.id).values(group_name="vip"))
        await points.grant(session, user.id, grant)
    ctx.catalog.invalidate()
    return user.id


def _request(user_id: int, n: int = 1, **parameters: Any) -> tasks.SubmitInput:
    return tasks.SubmitInput(
        user_id, None, MODEL, "一只猫", None, parameters=parameters or None, n=n
    )


async def _balance(ctx: AppContext, user_id: int) -> int:
    return (await points.balance_of(ctx.db, user_id)).balance


async def _task(ctx: AppContext, task_no: str) -> AiTask:
    async with ctx.db.read() as session:
        task = await session.scalar(select(AiTask).where(AiTask.task_no == task_no))
    assert task is not None
    return task


async def _end(ctx: AppContext, task: AiTask, target: Status, **values: Any) -> bool:
    """One worker's move of ``task`` as it read it; False when another moved it first."""
    async with ctx.db.write() as session:
        return await move(session, task, target, lease_owner=None, **values) is not None


async def _audit(ctx: AppContext) -> list[str]:
    async with ctx.db.snapshot() as session:
        checks = await ledger_audit.audit(session, utcnow() - timedelta(hours=1))
    return [f"{c.name}: {v}" for c in checks for v in c.violations]


def test_each_rule_kind_and_the_group_multiplier_price_a_submit(ctx: AppContext) -> None:
    async def go() -> None:
        user = await _setup(ctx, grant=10_000, multiplier="0.85")
        cases = [
            ({}, 1, 34),  # 40 × 0.85
            ({"size": "1024x1536"}, 1, 51),  # 40 × 1.5 × 0.85
            ({"quality": "low"}, 2, 9),  # fixed 10 × 0.85 = 8.5, up to 9 each
            ({"quality": "high", "size": "1024x1536"}, 1, 204),  # 160 × 1.5 × 0.85
        ]
        for parameters, n, each in cases:
            before = await _balance(ctx, user)
            [detail] = await tasks.submit_many(ctx, _request(user, n, **parameters), 1)
            assert detail.pointsCost == each * n
            assert detail.pictures == n
            assert before - await _balance(ctx, user) == each * n
            task = await _task(ctx, detail.taskNo)
            assert task.pricing is not None and task.pricing["each"] == each
            assert task.pricing["multiplier"] == "0.8500"
            assert task.params is not None and task.params["n"] == n
        assert await _audit(ctx) == []

    asyncio.run(go())


def test_an_unoffered_value_is_refused_and_charges_nothing(ctx: AppContext) -> None:
    async def go() -> None:
        user = await _setup(ctx, grant=1_000)
        for parameters, n, param in [
            ({"size": "640x480"}, 1, "size"),
            ({"quality": "ultra"}, 1, "quality"),
            ({"seed": 7}, 1, "seed"),
            ({}, 5, "n"),
        ]:
            with pytest.raises(BadRequest) as refused:
                await tasks.submit_many(ctx, _request(user, n, **parameters), 1)
            assert refused.value.data["param"] == param
            assert "可选" in str(refused.value.message) or "可用参数" in str(refused.value.message)
        assert await _balance(ctx, user) == 1_000
        async with ctx.db.read() as session:
            assert await session.scalar(select(AiTask.id).limit(1)) is None

    asyncio.run(go())


def test_a_price_change_between_two_submits_and_a_refund_after_it(ctx: AppContext) -> None:
    async def go() -> None:
        user = await _setup(ctx, grant=1_000)
        [first] = await tasks.submit_many(ctx, _request(user, 2, quality="high"), 1)
        assert first.pointsCost == 320
        # The operator doubles the high price; the catalog cache of this process still
        # holds the old rule: the charge reads the rule of this moment.
        async with ctx.db.write() as session:
            await session.execute(
                update(PointsConfig)
                .where(PointsConfig.model_name == MODEL)
                .values(price_rule={**RULE, "choices": {"quality": {"high": {"points": 320}}}})
            )
        [second] = await tasks.submit_many(ctx, _request(user, 1, quality="high"), 1)
        assert second.pointsCost == 320
        assert await _balance(ctx, user) == 1_000 - 640
        # The first task fails: it gets back what it was charged, not today's price.
        task = await _task(ctx, first.taskNo)
        assert await _end(ctx, task, Status.FAILED, error_message="上游失败")
        assert await _balance(ctx, user) == 1_000 - 320
        # The second completes with one picture of one: nothing given back.
        task = await _task(ctx, second.taskNo)
        assert await _end(ctx, task, Status.QUEUED)
        assert await _end(ctx, task, Status.COMPLETED, result_url="https://x/1.png", delivered=1)
        assert await _balance(ctx, user) == 1_000 - 320
        assert await _audit(ctx) == []

    asyncio.run(go())


def test_fewer_pictures_than_asked_are_given_back_once_however_workers_race(
    ctx: AppContext,
) -> None:
    """n=4, 3 delivered: one picture's points back, in the completing move, as a ledger
    entry of its own kind; 200 such tasks, each raced by three workers that read it at
    once (complete with 3, complete with 4, fail): exactly one move wins each."""

    async def go() -> None:
        each = 40
        user = await _setup(ctx, grant=RACERS * 4 * each)
        made = await tasks.submit_many(ctx, _request(user, 4), RACERS)
        assert await _balance(ctx, user) == 0
        for detail in made:
            task = await _task(ctx, detail.taskNo)
            assert await _end(ctx, task, Status.QUEUED)
        rng = random.Random(22)
        expected = 0
        outcomes = {"short": 0, "whole": 0, "failed": 0}
        for detail in made:
            stale = [await _task(ctx, detail.taskNo) for _ in range(3)]
            racers = [
                ("short", _end(ctx, stale[0], Status.COMPLETED, delivered=3)),
                ("whole", _end(ctx, stale[1], Status.COMPLETED, delivered=4)),
                ("failed", _end(ctx, stale[2], Status.FAILED, error_message="超时")),
            ]
            rng.shuffle(racers)
            won = await asyncio.gather(*(r for _, r in racers), return_exceptions=True)
            winners = [name for (name, _), w in zip(racers, won, strict=True) if w is True]
            errors = [w for w in won if isinstance(w, BaseException)]
            assert len(winners) == 1, (detail.taskNo, won)
            assert not errors or all(
                "lock" in str(e).lower() or "deadlock" in str(e).lower() for e in errors
            ), errors
            outcomes[winners[0]] += 1
            expected += {"short": each, "whole": 0, "failed": 4 * each}[winners[0]]
        assert await _balance(ctx, user) == expected
        async with ctx.db.read() as session:
            short = (
                (
                    await session.execute(
                        select(PointsLedger.delta).where(PointsLedger.kind == "undelivered")
                    )
                )
                .scalars()
                .all()
            )
        assert short == [each] * outcomes["short"]
        violations = await _audit(ctx)
        assert violations == []
        # Every outcome happened: the race was a race.
        assert all(outcomes.values()), outcomes
        report("partial delivery races", cases=3 * RACERS, tasks=RACERS, violations=0)

    asyncio.run(go())


def test_the_audit_sees_a_wrong_partial_refund(ctx: AppContext) -> None:
    """The audit's check can fail: a second 'undelivered' entry is refused by the
    database, and a completed task whose give-back does not match its count is named."""

    async def go() -> None:
        user = await _setup(ctx, grant=400)
        [detail] = await tasks.submit_many(ctx, _request(user, 4), 1)
        task = await _task(ctx, detail.taskNo)
        assert await _end(ctx, task, Status.QUEUED)
        assert await _end(ctx, task, Status.COMPLETED, delivered=2)
        assert await _audit(ctx) == []
        async with ctx.db.write() as session:
            await session.execute(
                update(AiTask).where(AiTask.task_no == detail.taskNo).values(delivered=3)
            )
        violations = await _audit(ctx)
        assert any(detail.taskNo in v and "交付 3 张" in v for v in violations), violations
        async with ctx.db.read() as session:
            account = await session.get(PointsAccount, user)
        assert account is not None and account.balance == 400 - 160 + 80

    asyncio.run(go())
