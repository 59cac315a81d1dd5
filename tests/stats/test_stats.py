"""``/admin/stats`` (issue 13): the rollup of closed hours gives exactly what the tasks
themselves give, on SQLite, MariaDB and PostgreSQL; and the figures move as tasks end."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from shengtu.accounts.service import create_user
from shengtu.config import Settings
from shengtu.db import Database, utcnow
from shengtu.migrate import upgrade
from shengtu.models.channels import Channel
from shengtu.models.tasks import AiTask
from shengtu.stats import service
from shengtu.stats.service import HOUR, Counts, floor_hour
from tests.databases import ScratchDatabase
from tests.support import Platform

MODELS = ("m-a", "m-b", "m-c")


async def _seed(db: Database, now: Any) -> list[dict[str, Any]]:
    """Tasks that ended over the last three days, and what each should count as."""
    users = [(await create_user(db, f"stat{i}", "password-123")).id for i in range(6)]
    async with db.write() as session:
        channels = [
            Channel(name=f"c{i}", protocol="suchuang", base_url="http://x", cost_per_picture=c)
            for i, c in enumerate((Decimal("0.05"), Decimal("0.12")))
        ]
        session.add_all(channels)
        await session.flush()
        channel_ids = [None, *(c.id for c in channels)]
        rng = random.Random(7)
        made = []
        for i in range(600):
            ended = now - timedelta(seconds=rng.randint(0, 3 * 86400))
            took = rng.choice((1.5, 4, 12, 40, 100, 700))
            status = rng.choice(("completed", "completed", "completed", "failed"))
            row = dict(
                task_no=f"TASK-S{i:05d}",
                user_id=rng.choice(users),
                model_name=rng.choice(MODELS),
                task_type="text_to_image",
                status=status,
                prompt="p",
                image_urls=[],
                points_cost=rng.choice((10, 30, 45)),
                provider="suchuang",
                upstream_model="x",
                upstream_params={},
                channel_id=rng.choice(channel_ids),
                deadline_at=ended,
                created_at=ended - timedelta(seconds=took),
                completed_at=ended,
                updated_at=ended,
            )
            session.add(AiTask(**row))
            made.append(row)
        # Still running: counted in flight, not in the sums.
        session.add(
            AiTask(**{**made[0], "task_no": "TASK-RUN", "status": "queued", "completed_at": None})
        )
    return made


def _summary(report: service.Report) -> dict[str, Any]:
    def plain(c: Counts) -> tuple[Any, ...]:
        return (c.completed, c.failed, c.charged, c.refunded, c.cost, tuple(c.latency))

    routes = list(report.by_route.items())
    return {
        "hours": {k: plain(c) for k, c in report.by_hour.items() if c.completed or c.failed},
        "models": {k: plain(c) for k, c in service.group(routes, lambda k: k[0]).items()},
        "channels": {k: plain(c) for k, c in service.group(routes, lambda k: k[1]).items()},
        # Users are summed by outcome and points only.
        "top": [(u, plain(c)[:4]) for u, _, c in report.top_users],
        "in_flight": report.in_flight,
    }


def test_the_rollup_gives_exactly_what_the_tasks_give(
    tmp_path: Path, fresh_database: ScratchDatabase
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=fresh_database.url)
    upgrade(settings)

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            now = utcnow()
            made = await _seed(db, now)
            start, end = floor_hour(now) - timedelta(days=4), floor_hour(now) + HOUR
            live = _summary(await service.report(db, start, end, top=3))
            hours = await service.rollup(db, now)
            assert hours > 0
            assert await service.rolled_to(db) == floor_hour(now - service.ROLLUP_LAG)
            assert await service.rollup(db, now) == 0  # nothing twice
            rolled = _summary(await service.report(db, start, end, top=3))
            assert rolled == live

            # And both are what the tasks say, counted here independently.
            by_model: dict[str, Counter[str]] = {m: Counter() for m in MODELS}
            for t in made:
                c = by_model[t["model_name"]]
                c[t["status"]] += 1
                c["charged"] += t["points_cost"]
                c["refunded"] += t["points_cost"] if t["status"] == "failed" else 0
            for model, c in by_model.items():
                got = rolled["models"][model]
                assert got[:4] == (c["completed"], c["failed"], c["charged"], c["refunded"])
            cost = sum(
                (Decimal("0.05") if t["channel_id"] == 1 else Decimal("0.12"))
                for t in made
                if t["status"] == "completed" and t["channel_id"]
            )
            assert sum(v[4] for v in rolled["channels"].values()) == cost
            assert rolled["in_flight"] == 1
            net: Counter[int] = Counter()
            for t in made:
                net[t["user_id"]] += 0 if t["status"] == "failed" else t["points_cost"]
            assert [u for u, _ in rolled["top"]] == [u for u, _ in net.most_common(3)]

            # A window that splits the rollup from the live hours sums the same.
            reach = await service.rolled_to(db)
            early = await service.report(db, start, reach, top=3)
            late = await service.report(db, reach, end, top=3)
            total = Counts()
            for c in (*early.by_hour.values(), *late.by_hour.values()):
                total.add(c)
            assert total.completed + total.failed == len(made)
        finally:
            await db.dispose()

    asyncio.run(run())


def test_the_stats_move_as_tasks_end(audited: Platform) -> None:
    assert audited.admin is not None
    admin = audited.admin.client
    model = "sc_soraimg_text_1x1"

    def figures() -> dict[str, Any]:
        body = admin.get("/admin/stats", params={"granularity": "hour", "top": 100}).json()
        assert body["code"] == 200, body
        return body["data"]

    def of_model(data: dict[str, Any]) -> dict[str, Any]:
        empty = {"completed": 0, "failed": 0, "charged": 0, "refunded": 0}
        return next((m for m in data["byModel"] if m["model"] == model), empty)

    before = figures()
    # Nine pictures: a net (270) that ranks this user among the shared platform's top 100.
    user = audited.new_user(points=300)
    done = [user.submit(modelName=model, prompt=f"统计 {i}")["data"] for i in range(9)]
    failed = user.submit(modelName=model, prompt="统计 [sandbox:fail]")["data"]
    for task in (*done, failed):
        user.wait(task["taskNo"], timeout=30)
    after = figures()
    a, b = of_model(after), of_model(before)
    assert (a["completed"] - b["completed"], a["failed"] - b["failed"]) == (9, 1)
    assert (a["charged"] - b["charged"], a["refunded"] - b["refunded"]) == (300, 30)
    assert after["totals"]["tasks"] == before["totals"]["tasks"] + 10
    assert after["totals"]["p50Seconds"] is not None
    assert any(u["username"] == user.name and u["net"] == 270 for u in after["topUsers"])
    assert after["series"] and after["series"][-1]["time"] >= time.strftime("%Y-%m-%d")[:4]
    days = admin.get("/admin/stats", params={"granularity": "day"}).json()["data"]
    assert days["totals"]["tasks"] >= after["totals"]["tasks"]
    bad = admin.get("/admin/stats", params={"start": "2026-01-02T00:00", "end": "2026-01-01"})
    assert bad.json()["code"] == 400
    assert httpx.get(audited.url + "/admin/stats").status_code == 401


def test_times_out_of_range_are_a_400_not_a_500(platform: Platform) -> None:
    """Issue 20, finding 7: year 1 at +08:00 overflowed the conversion to UTC."""
    assert platform.admin is not None
    admin = platform.admin.client
    for path, params in (
        ("/admin/stats", {"start": "0001-01-01T00:00:00"}),
        ("/admin/stats", {"end": "0001-01-01T00:00:00"}),
        ("/admin/stats", {"start": "1969-12-31T00:00:00", "end": "1970-01-02T00:00:00"}),
        ("/admin/stats", {"end": "9999-12-31T23:59:59"}),
        (
            "/admin/stats",
            {"start": "2025-01-01T00:00:00+14:00", "end": "9999-12-31T23:00:00-12:00"},
        ),
        ("/admin/tasks", {"createdFrom": "0001-01-01T00:00:00"}),
        ("/admin/users", {"createdTo": "0001-01-01T00:00:00"}),
    ):
        r = admin.get(path, params=params)
        assert r.status_code == 400, (path, params, r.text)
        body = r.json()
        assert body["code"] == 400 and body["data"] is None
        assert "超出可用范围" in body["message"], body
    # A range inside the bounds still answers, on every database.
    r = admin.get(
        "/admin/stats", params={"start": "1970-01-02T00:00:00", "end": "1970-01-03T00:00:00"}
    )
    assert r.json()["code"] == 200, r.text
    r = admin.get("/admin/tasks", params={"createdFrom": "1970-01-02T00:00:00"})
    assert r.json()["code"] == 200, r.text
