"""Slow downloads and slow upstreams do not keep a task alive past its deadline (issue 20,
finding 3): a result URL or a reference URL that feeds a byte at a time, and a submit
the upstream never answers, each end ``failed`` by the deadline (or, for a drip, by the
rate floor well before it), refunded through the state machine, with the ledger exact;
and dripping references do not hold the connections that other tasks' results are
copied on. On SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from shengtu import netguard
from shengtu.config import Settings
from shengtu.db import Database
from shengtu.models.tasks import AiTask
from shengtu.runner import upstreams
from shengtu.tasks.worker import Worker
from tests.databases import ScratchDatabase
from tests.support import OPENAI_MODELS, TERMINAL, Platform, User, png, serve_http

SLACK = 2.5  # how late after the deadline a task may be seen failed (polls, a loaded box)


def watch(user: User, started: dict[str, float], timeout: float) -> dict[str, tuple[float, Any]]:
    """task number → (seconds from its submit to its end seen, the ended task)."""
    ended: dict[str, tuple[float, Any]] = {}
    until = time.monotonic() + timeout
    while len(ended) < len(started) and time.monotonic() < until:
        for task_no, at in started.items():
            if task_no not in ended:
                task = user.task(task_no)
                if task["status"] in TERMINAL:
                    ended[task_no] = (time.monotonic() - at, task)
        time.sleep(0.1)
    left = {n: user.task(n)["status"] for n in started if n not in ended}
    assert not left, f"not terminal after {timeout}s: {left}"
    return ended


def submit(user: User, **body: Any) -> tuple[str, float]:
    answer = user.submit(**body)
    assert answer["code"] == 200, answer
    return answer["data"]["taskNo"], time.monotonic()


def test_slow_result_downloads_end_by_the_rate_floor_or_the_deadline_refunded(
    own_platform: Callable[..., Platform],
) -> None:
    deadline = 12
    with own_platform(
        SHENGTU_TASK_DEADLINE=str(deadline),
        SHENGTU_FETCH_MIN_BYTES_PER_SECOND="256",
        SHENGTU_FETCH_RATE_GRACE_SECONDS="2",
        SHENGTU_DOWNLOAD_ATTEMPTS="2",
    ) as platform:
        user = platform.new_user(points=300)
        model = "sc_soraimg_text_1x1"  # 30 points
        # A byte a second: below the floor. 1 KiB/s without end: above it, never done.
        drip, drip_at = submit(user, modelName=model, prompt="滴 [sandbox:drip]")
        trickle, trickle_at = submit(user, modelName=model, prompt="涓流 [sandbox:trickle]")
        healthy, healthy_at = submit(user, modelName=model, prompt="健康的一只猫")
        assert user.balance() == 300 - 3 * 30
        ended = watch(
            user, {drip: drip_at, trickle: trickle_at, healthy: healthy_at}, deadline + 15
        )

        took, task = ended[drip]
        assert task["status"] == "failed", task
        assert "结果图片转存失败:下载结果图片速度过慢" in task["errorMessage"], task
        # Cut by the floor (two tries of a 2 s window), long before the deadline.
        assert took < deadline - 3, (took, task)

        took, task = ended[trickle]
        assert task["status"] == "failed", task
        assert task["errorMessage"] == f"任务超时:结果图片在任务时限({deadline} 秒)内未能下载完成"
        assert deadline - 1 <= took <= deadline + SLACK, took

        assert ended[healthy][1]["status"] == "completed", ended[healthy]
        assert user.balance() == 300 - 30  # both slow ones refunded
        log = platform.server.log_text()
        assert '"step_overran"' in log and '"step_crashed"' not in log
        platform.audit()


class DripServer:
    """A reference picture's server on loopback that sends a byte a second, counting the
    requests it had and the connections still open."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.open = 0
        picture = png((256, 256))
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer.lock:
                    outer.requests += 1
                    outer.open += 1
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(picture)))
                    self.end_headers()
                    for index in range(len(picture)):
                        self.wfile.write(picture[index : index + 1])
                        self.wfile.flush()
                        time.sleep(1.0)
                except OSError:
                    pass  # the worker hung up
                finally:
                    with outer.lock:
                        outer.open -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = serve_http(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class InProcessWorker:
    """``shengtu worker``, run in a thread of this process: the one place the test can
    let the worker fetch from loopback (``netguard`` patched, as in
    tests/storage/test_fetch_pinning.py), standing in for a user's public server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()
        assert self.ready.wait(30), "the in-process worker did not start"

    async def _run(self) -> None:
        async with upstreams(self.settings, role="worker") as ctx:
            await ctx.start()
            self.worker = Worker(ctx)
            self.loop = asyncio.get_running_loop()
            self.ready.set()
            try:
                await self.worker.run()
            finally:
                await ctx.aclose()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the in-process worker did not stop"


def point_at(settings: Settings, urls: dict[str, str]) -> None:
    """Each task's reference, made the drip server's loopback URL (the submit refuses
    one; the worker's fetch, patched here, takes it as a user's public server)."""

    async def go() -> None:
        db = Database(settings.resolved_database_url)
        try:
            async with db.write() as session:
                for task_no, url in urls.items():
                    await session.execute(
                        update(AiTask).where(AiTask.task_no == task_no).values(image_urls=[url])
                    )
        finally:
            await db.dispose()

    asyncio.run(go())


TEXT, URL_MODEL, EDIT = OPENAI_MODELS


def test_dripping_references_and_a_hung_submit_end_at_the_deadline_blocking_no_copy(
    tmp_path: Path, fresh_database: ScratchDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    deadline = 8  # under the 9.5 s the sandbox takes to answer a [sandbox:timeout] submit
    platform = Platform(
        tmp_path,
        worker=False,
        database_url=fresh_database.url,
        SHENGTU_TASK_DEADLINE=str(deadline),
        # No floor: here only the deadline cuts the drips, which hold their connections
        # till then; two connections per pool, both of which the drips take.
        SHENGTU_FETCH_MIN_BYTES_PER_SECOND="0",
        SHENGTU_REFERENCE_FETCH_CONNECTIONS="2",
        SHENGTU_FETCH_CONNECTIONS="2",
        SHENGTU_MAX_INFLIGHT_TASKS="50",
        # A submit sent near the deadline gets at least this long (the worker's
        # _by_deadline): short here, so the deadline is what cuts the hung one.
        SHENGTU_UPSTREAM_TIMEOUT="2",
    ).start()
    drip = DripServer()
    worker: InProcessWorker | None = None
    try:
        admin = platform.admin_client
        sandbox, key = platform.openai_sandbox()
        models = [
            {"modelName": TEXT, "upstreamModel": "gpt-image-1", "upstreamParams": {}},
            {
                "modelName": URL_MODEL,
                "upstreamModel": "gpt-image-1",
                "upstreamParams": {"response_format": "url"},
            },
            {"modelName": EDIT, "upstreamModel": "gpt-image-1", "upstreamParams": {}},
        ]
        channel = platform.add_channel(
            settle=False,
            protocol="openai_images",
            baseUrl=sandbox,
            models=models,
            name="OpenAI",
            addKeys=[key],
        )
        assert channel["timeoutSeconds"] == 300  # the deadline, not this, cuts

        user = platform.new_user(points=1000)
        # No worker yet: the tasks wait, charged, while their references are pointed at
        # the drip server.
        slow: dict[str, float] = {}
        for i in range(2):
            task_no, at = submit(
                user, modelName=EDIT, prompt=f"慢参考图 {i}", imageUrl="https://93.184.216.34/r.png"
            )
            slow[task_no] = at
        hung_prompt = "不回答 [sandbox:timeout]"
        hung, hung_at = submit(user, modelName=TEXT, prompt=hung_prompt)
        point_at(platform.settings(), {n: f"{drip.url}/ref-{i}.png" for i, n in enumerate(slow)})

        public = netguard.is_public_ip
        loopback = ipaddress.ip_address("127.0.0.1")
        monkeypatch.setattr(netguard, "is_public_ip", lambda ip: ip == loopback or public(ip))
        worker = InProcessWorker(platform.settings())

        until = time.monotonic() + 10
        while drip.open < 2 and time.monotonic() < until:
            time.sleep(0.05)
        assert drip.open == 2, "the drips never held the reference pool"
        # Both reference connections held: other tasks' results are copied all the same.
        healthy = dict(submit(user, modelName=URL_MODEL, prompt=f"健康 {i}") for i in range(3))
        copied = watch(user, healthy, 10)
        assert all(t["status"] == "completed" for _, t in copied.values()), copied
        assert max(took for took, _ in copied.values()) < 4, copied
        assert drip.open == 2, "the drips ended before the copies: nothing was shown"

        ended = watch(user, {**slow, hung: hung_at}, deadline + 10)
        for task_no in slow:
            took, task = ended[task_no]
            assert task["status"] == "failed", task
            assert task["errorMessage"] == f"任务超时:参考图在任务时限({deadline} 秒)内未能下载完成"
            assert deadline - 1 <= took <= deadline + SLACK, took
        took, task = ended[hung]
        assert task["status"] == "failed", task
        assert "无法确认上游是否已接受任务" in task["errorMessage"], task
        assert "任务不再重试" in task["errorMessage"], task
        assert deadline - 1 <= took <= deadline + SLACK, took

        # The worker hung up on the drips (no retry), and never sent the hung task again,
        # not even after the upstream answered its one submit (at 9.5 s).
        until = time.monotonic() + 3
        while drip.open and time.monotonic() < until:
            time.sleep(0.05)
        assert (drip.open, drip.requests) == (0, 2)
        time.sleep(max(0.0, hung_at + 11 - time.monotonic()))
        stats = httpx.get(sandbox + "/stats").json()
        assert stats["accepted"][hung_prompt] == 1, stats["accepted"]
        assert not any(p.startswith("慢参考图") for p in stats["accepted"]), stats["accepted"]
        tries = admin.get(f"/admin/tasks/{hung}/attempts").json()["data"]
        assert [(t["channelName"], t["outcome"]) for t in tries] == [("OpenAI", "uncertain")]
        listed = {c["name"]: c for c in admin.get("/admin/channels").json()["data"]}
        assert listed["OpenAI"]["uncertainCount"] == 1

        assert user.balance() == 1000 - 3 * 40  # only the three copies paid for
        worker.stop()
        worker = None
        platform.audit()
    finally:
        if worker is not None:
            worker.stop()
        drip.stop()
        platform.stop()
