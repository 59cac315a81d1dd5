"""The stats' cost and revenue (issue 22): a task's recorded cost where it has one, its
channel's flat cost per picture × the pictures delivered where it has none (tasks from
before costs were recorded); the points kept net of every refund, the pictures a
completed task did not deliver included. The rollup gives the same as the tasks."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from shengtu.accounts.service import create_user
from shengtu.config import Settings
from shengtu.db import Database, utcnow
from shengtu.migrate import upgrade
from shengtu.models.channels import Channel
from shengtu.models.tasks import AiTask
from shengtu.stats import service
from shengtu.stats.admin_router import row
from shengtu.stats.service import HOUR, Counts, floor_hour
from tests.databases import ScratchDatabase

PRICE = Decimal("0.01")


async def _seed(db: Database, ended: Any) -> tuple[int, int]:
    user = (await create_user(db, "coster", "password-123")).id
    async with db.write() as session:
        channel = Channel(
            name="成本",
            protocol="openai_images",
            base_url="http://x",
            cost_per_picture=Decimal("0.05"),
        )
        session.add(channel)
        await session.flush()
        tasks = [
            # (status, points, pictures, delivered, cost, channel)
            ("completed", 30, 3, 2, Decimal("0.7"), channel.id),  # recorded: by its rule
            ("completed", 20, 2, 2, None, channel.id),  # none recorded: 0.05 × 2
            ("completed", 10, 1, None, None, channel.id),  # before pictures were counted
            ("completed", 40, 4, 1, None, channel.id),  # 0.05 × 1; 30 points given back
            ("failed", 20, 2, 0, None, channel.id),  # refunded; no cost counted
            ("completed", 10, 1, 1, None, None),  # the upstream of the settings: unknown
        ]
        for i, (status, points, pictures, delivered, cost, channel_id) in enumerate(tasks):
            session.add(
                AiTask(
                    task_no=f"TASK-C{i:03d}",
                    user_id=user,
                    model_name="m-cost",
                    task_type="text_to_image",
                    status=status,
                    prompt="p",
                    image_urls=[],
                    points_cost=points,
                    pictures=pictures,
                    delivered=delivered,
                    cost=cost,
                    provider="openai_images",
                    upstream_model="x",
                    upstream_params={},
                    channel_id=channel_id,
                    deadline_at=ended,
                    created_at=ended - timedelta(seconds=5),
                    completed_at=ended,
                    updated_at=ended,
                )
            )
    return channel.id, user


def test_the_margin_takes_the_recorded_cost_and_every_refund(
    tmp_path: Path, fresh_database: ScratchDatabase
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=fresh_database.url)
    upgrade(settings)

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            now = utcnow()
            channel_id, user = await _seed(db, now - 2 * HOUR)
            start, end = floor_hour(now) - timedelta(days=1), floor_hour(now) + HOUR
            reports = [await service.report(db, start, end)]
            assert await service.rollup(db, now) > 0
            reports.append(await service.report(db, start, end))
            for report in reports:  # live, then from the rollup: the same
                by_channel = service.group(report.by_route.items(), lambda k: k[1])
                paid = by_channel[channel_id]
                assert (paid.completed, paid.failed) == (4, 1)
                assert paid.charged == 30 + 20 + 10 + 40 + 20
                assert paid.refunded == 10 + 30 + 20
                assert paid.cost == Decimal("0.7") + Decimal("0.1") + Decimal("0.05") * 2
                shown = row(paid, PRICE)
                assert shown.revenue == Decimal(120 - 60) * PRICE
                assert shown.margin == Decimal("0.6") - Decimal("0.9")
                assert by_channel[0].cost == 0 and by_channel[0].refunded == 0
                total = Counts()
                for counts in report.by_hour.values():
                    total.add(counts)
                assert (total.charged, total.refunded) == (130, 60)
                (top,) = report.top_users
                assert top[0] == user and top[2].charged - top[2].refunded == 70
        finally:
            await db.dispose()

    asyncio.run(run())
