"""``/admin/stats`` on a database of 1,000,000 tasks (issue 13: answers within 300 ms).

The tasks are written straight into the embedded SQLite database (60 days of them, 1,000
users, 5 models, 3 channels and the settings' upstream), the rollup is built the way the
worker's sweep builds it, and an admin asks ``shengtu serve`` over HTTP, as the console
does: the last 24 hours by hour, the last 30 days by day, and 60 days by day.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from tests.support import Platform

MODELS = ("sc_soraimg_text_1x1", "sc_soraimg_text_2x3", "sc_soraimg_img2img_1x1", "m4", "m5")
TARGET_MS = 300.0


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def seed(db_path: Path, tasks: int, users: int = 1000, days: int = 60) -> float:
    """Write ``tasks`` ended tasks; seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(tzinfo=None)
    rng = random.Random(13)
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA synchronous=OFF")
        first_user = 1 + (db.execute("SELECT max(id) FROM users").fetchone()[0] or 0)
        db.executemany(
            "INSERT INTO users (id, username, password_hash, role, is_active, auth_epoch,"
            " auth_nonce, group_name, created_at)"
            " VALUES (?, ?, 'x', 'user', 1, 0, ?, 'default', ?)",
            [(first_user + i, f"bench{i}", f"n{i:030d}", _stamp(now)) for i in range(users)],
        )
        db.executemany(
            "INSERT INTO channel (name, protocol, base_url, priority, weight, key_rps,"
            " key_inflight, timeout_seconds, cost_per_picture, uncertain_submit,"
            " uncertain_count, late_count, enabled, created_at, updated_at)"
            " VALUES (?, 'suchuang', 'http://bench.invalid', 0, 1, 15, 0, 30, ?, 'fail', 0, 0,"
            " 1, ?, ?)",
            [
                (f"bench-{i}", cost, _stamp(now), _stamp(now))
                for i, cost in enumerate((0.05, 0.08, 0.1))
            ],
        )
        channels = [None] + [
            r[0] for r in db.execute("SELECT id FROM channel WHERE name LIKE 'bench-%'")
        ]
        batch = []
        for i in range(tasks):
            ended = now - timedelta(seconds=rng.random() * days * 86400)
            took = rng.choice((3.0, 8.0, 15.0, 25.0, 40.0, 90.0))
            created = ended - timedelta(seconds=took)
            status = "failed" if rng.random() < 0.08 else "completed"
            batch.append(
                (
                    f"TASK-B{i:09d}",
                    first_user + rng.randrange(users),
                    rng.choice(MODELS),
                    status,
                    rng.choice((30, 35, 45)),
                    rng.choice(channels),
                    _stamp(created),
                    _stamp(ended),
                )
            )
            if len(batch) == 50_000:
                _insert(db, batch)
                batch = []
        if batch:
            _insert(db, batch)
    return time.perf_counter() - started


def _insert(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    db.executemany(
        "INSERT INTO ai_task (task_no, user_id, model_name, task_type, status, progress, prompt,"
        " image_urls, points_cost, provider, channel_id, upstream_model, upstream_params,"
        " attempts, poll_count, next_run_at, deadline_at, created_at, updated_at, completed_at)"
        " VALUES (?1, ?2, ?3, 'text_to_image', ?4, 100, 'bench', '[]', ?5, 'suchuang', ?6,"
        " 'image_gpt', '{}', 1, 1, ?8, ?8, ?7, ?8, ?8)",
        rows,
    )


def build_rollup(database_url: str) -> tuple[float, int]:
    from shengtu.db import Database
    from shengtu.stats import service

    async def run() -> tuple[float, int]:
        db = Database(database_url)
        try:
            started = time.perf_counter()
            hours = await service.rollup(db)
            return time.perf_counter() - started, hours
        finally:
            await db.dispose()

    return asyncio.run(run())


def timed(client: httpx.Client, params: dict[str, str], times: int) -> tuple[float, float]:
    """(median, max) milliseconds of ``times`` answers, after one unmeasured."""
    client.get("/admin/stats", params=params).raise_for_status()
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        answer = client.get("/admin/stats", params=params)
        spent.append((time.perf_counter() - started) * 1000)
        assert answer.json()["code"] == 200, answer.text[:300]
    return statistics.median(spent), max(spent)


def stats_benchmark(report: Any, work: Path, tasks: int, times: int) -> None:
    data = work / "stats"
    data.mkdir()
    p = Platform(data, worker=False, SHENGTU_LOG_LEVEL="WARNING").start()
    try:
        assert p.admin is not None
        seeded = seed(data / "shengtu.db", tasks)
        built, hours = build_rollup(
            p.env.get("SHENGTU_DATABASE_URL") or f"sqlite+aiosqlite:///{data / 'shengtu.db'}"
        )
        report.row(
            f"stats rollup, built once from {tasks:,} tasks over 60 days (the sweep keeps it"
            " current after)",
            f"{built:.1f} s for {hours:,} hours (seeding took {seeded:.0f} s)",
        )
        sixty_days_ago = (datetime.now() - timedelta(days=60)).strftime("%Y-%m-%dT%H:%M")
        views = (
            ("last 24 hours by hour", {"granularity": "hour"}),
            ("last 30 days by day", {"granularity": "day"}),
            (
                "60 days by day",
                {
                    "granularity": "day",
                    "start": sixty_days_ago,
                },
            ),
        )
        client = p.admin.client
        for name, params in views:
            median, worst = timed(client, params, times)
            report.row(
                f"`GET /admin/stats` on {tasks:,} tasks, {name} (median of {times}; max)",
                f"{median:.0f} ms; {worst:.0f} ms",
                f"≤ {TARGET_MS:.0f} ms",
                worst <= TARGET_MS,
            )
    finally:
        p.stop()
