"""A task an upstream refused for its content counts apart from an outage: in the stats
(live and rolled up, per model and channel) and in the metrics' outcome."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from shengtu.accounts.service import create_user
from shengtu.config import Settings
from shengtu.db import Database, utcnow
from shengtu.migrate import upgrade
from shengtu.models.tasks import AiTask
from shengtu.providers.base import is_moderation
from shengtu.stats import service
from shengtu.stats.admin_router import row
from shengtu.stats.service import HOUR, floor_hour
from tests.databases import ScratchDatabase

ENDINGS = [
    ("completed", None),
    ("failed", "提交上游失败:内容审核未通过:上游判定提示词含敏感内容"),
    ("failed", "内容审核未通过:上游判定生成的图片含不当内容(DataInspectionFailed)"),
    ("failed", "上游服务错误(HTTP 500)"),
    ("failed", "任务超时"),
]


def test_a_moderation_is_its_own_reason() -> None:
    assert [is_moderation(e) for _, e in ENDINGS] == [False, True, True, False, False]


def test_the_stats_count_moderations_apart(tmp_path: Path, fresh_database: ScratchDatabase) -> None:
    settings = Settings(data_dir=tmp_path, database_url=fresh_database.url)
    upgrade(settings)

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            now = utcnow()
            ended = now - 2 * HOUR
            user = (await create_user(db, "moderated", "password-123")).id
            async with db.write() as session:
                for i, (status, error) in enumerate(ENDINGS):
                    session.add(
                        AiTask(
                            task_no=f"TASK-M{i:03d}",
                            user_id=user,
                            model_name="m-mod",
                            task_type="text_to_image",
                            status=status,
                            prompt="p",
                            image_urls=[],
                            points_cost=10,
                            error_message=error,
                            provider="suchuang",
                            upstream_model="x",
                            upstream_params={},
                            deadline_at=ended,
                            created_at=ended - timedelta(seconds=5),
                            completed_at=ended,
                            updated_at=ended,
                        )
                    )
            start, end = floor_hour(now) - timedelta(days=1), floor_hour(now) + HOUR
            reports = [await service.report(db, start, end)]
            assert await service.rollup(db, now) > 0
            reports.append(await service.report(db, start, end))
            for report in reports:  # live, then from the rollup: the same
                counts = report.by_route[("m-mod", 0)]
                assert (counts.completed, counts.failed, counts.moderated) == (1, 4, 2)
                shown = row(counts, Decimal("0.01"))
                assert (shown.failed, shown.moderated) == (4, 2)
        finally:
            await db.dispose()

    asyncio.run(run())
