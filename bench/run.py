"""``make bench``: the spec's text-to-image request end to end, and task-detail throughput.

Starts ``shengtu serve`` as a user would (embedded shape, sandbox upstream), drives it
over loopback from this separate process, and prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.databases import ScratchDatabase, reachable
from tests.support import Platform, RedisServer, free_port, wait_http

SPEC_BODY = {
    "modelName": "sc_soraimg_text_1x1",
    "prompt": "一个可爱的橘猫在窗台上晒太阳,温馨的室内场景,柔和的光线",
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def end_to_end(p: Platform, token: str, runs: int) -> dict[str, list[float]]:
    """Submit as the spec does; time until the client sees ``completed`` (WebSocket, poll)."""
    ws_times: list[float] = []
    poll_times: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    ws_url = p.url.replace("http://", "ws://") + f"/ws/tasks?token={token}"
    async with httpx.AsyncClient(base_url=p.url, headers=headers) as client, connect(ws_url) as ws:
        await ws.recv()
        for _ in range(runs):
            started = time.perf_counter()
            task_no = (await client.post("/user/ai/tasks/submit", json=SPEC_BODY)).json()["data"][
                "taskNo"
            ]

            async def by_poll(task_no: str = task_no, started: float = started) -> None:
                while True:
                    data = (await client.get(f"/user/ai/tasks/{task_no}")).json()["data"]
                    if data["status"] == "completed":
                        poll_times.append(time.perf_counter() - started)
                        return
                    await asyncio.sleep(0.05)

            async def by_ws(task_no: str = task_no, started: float = started) -> None:
                while True:
                    event = json.loads(await ws.recv())
                    data = event.get("data", {})
                    if data.get("taskNo") == task_no and data.get("status") == "completed":
                        ws_times.append(time.perf_counter() - started)
                        return

            await asyncio.wait_for(asyncio.gather(by_poll(), by_ws()), 60)
    return {"websocket": ws_times, "poll (50 ms)": poll_times}


async def detail_load(p: Platform, token: str, seconds: float, connections: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=p.url, headers=headers, limits=httpx.Limits(max_connections=connections)
    ) as client:
        task_no = (await client.post("/user/ai/tasks/submit", json=SPEC_BODY)).json()["data"][
            "taskNo"
        ]
        latencies: list[float] = []
        errors = 0
        stop = time.perf_counter() + seconds

        async def one() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await client.get(f"/user/ai/tasks/{task_no}")
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        began = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    return {"rps": len(latencies) / elapsed, "latencies": latencies, "errors": errors}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def submit_load(
    urls: list[str], tokens: list[str], total: int, connections: int
) -> dict[str, Any]:
    """``total`` submits spread over the API processes and users, ``connections`` at once."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    clients = [
        httpx.AsyncClient(base_url=u, limits=httpx.Limits(max_connections=connections))
        for u in urls
    ]
    counter = iter(range(total))

    async def one() -> None:
        for i in counter:
            client = clients[i % len(clients)]
            headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
            t0 = time.perf_counter()
            r = await client.post("/user/ai/tasks/submit", json=SPEC_BODY, headers=headers)
            latencies.append(time.perf_counter() - t0)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    elapsed = time.perf_counter() - began
    for c in clients:
        await c.aclose()
    return {"rps": total / elapsed, "latencies": latencies, "codes": codes}


def scaled(rows: list[tuple[str, str]], tasks: int) -> None:
    """2 API processes on MariaDB + Redis: submit throughput; one worker's tasks in flight."""
    if not reachable("mariadb"):
        rows.append(("scaled shape", "skipped: MariaDB is not reachable on 127.0.0.1:3306"))
        return
    with tempfile.TemporaryDirectory() as tmp, ScratchDatabase("mariadb") as database:
        redis = RedisServer(Path(tmp)).start()
        p = Platform(
            Path(tmp),
            worker=False,
            database_url=database.url,
            SHENGTU_REDIS_URL=redis.url,
            SHENGTU_SANDBOX_LATENCY="30",
            SHENGTU_POLL_INTERVAL="5",
            SHENGTU_FIRST_POLL_DELAY="3",
            SHENGTU_TASK_DEADLINE="300",
            SHENGTU_MAX_INFLIGHT_TASKS="100000",
            SHENGTU_UPSTREAM_RPS="100000",
            SHENGTU_WORKER_CONCURRENCY="256",
            SHENGTU_LOG_LEVEL="WARNING",
        ).start()
        try:
            port2 = free_port()
            api2 = f"http://127.0.0.1:{port2}"
            wait_http(api2 + "/healthz", p.spawn("serve", "--no-worker", "--port", str(port2)))
            users = [p.new_user(points=10_000_000) for _ in range(20)]
            load = asyncio.run(submit_load([p.url, api2], [u.token for u in users], tasks, 64))
            lat = load["latencies"]
            rows.append(
                (
                    "POST submit, 2 API processes, MariaDB + Redis, 64 conns, 20 users",
                    f"{load['rps']:.0f} req/s · p50 {pct(lat, 0.5) * 1000:.1f} ms · "
                    f"p99 {pct(lat, 0.99) * 1000:.1f} ms · codes {load['codes']}",
                )
            )
            worker = p.spawn("worker")
            time.sleep(8)  # every task submitted upstream, then polled every 5 s
            c0, t0 = cpu_seconds(worker.proc.pid), time.perf_counter()
            time.sleep(10)
            cpu = (cpu_seconds(worker.proc.pid) - c0) / (time.perf_counter() - t0)
            rss = int(
                Path(f"/proc/{worker.proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]
            )
            in_flight = sum(
                u.client.get("/user/ai/tasks/list?status=processing&size=1").json()["data"]["total"]
                + u.client.get("/user/ai/tasks/list?status=queued&size=1").json()["data"]["total"]
                for u in users
            )
            rows.append(
                (
                    "one worker, MariaDB, sandbox 30 s, poll 5 s: tasks in flight",
                    f"{in_flight} tracked · CPU {cpu * 100:.0f}% of a core"
                    f" · RSS {rss / 1024:.0f} MB",
                )
            )
        finally:
            p.stop()
            redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--scaled-tasks", type=int, default=2000)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    for label, poll, first in [
        ("defaults (poll 5 s, first poll 3 s)", "5", "3"),
        ("poll 0.5 s", "0.5", "0.2"),
    ]:
        with tempfile.TemporaryDirectory() as tmp:
            p = Platform(
                Path(tmp),
                SHENGTU_SANDBOX_LATENCY="1",
                SHENGTU_POLL_INTERVAL=poll,
                SHENGTU_FIRST_POLL_DELAY=first,
                SHENGTU_TASK_DEADLINE="120",
                SHENGTU_LOG_LEVEL="WARNING",
            ).start()
            try:
                user = p.new_user(points=1_000_000)
                e2e = asyncio.run(end_to_end(p, user.token, args.runs))
                for channel, times in e2e.items():
                    rows.append(
                        (
                            f"spec text-to-image, latency 1 s, {label}, seen by {channel}",
                            f"p50 {statistics.median(times):.2f} s · max {max(times):.2f} s"
                            f" · n={len(times)}",
                        )
                    )
                if poll == "0.5":
                    load = asyncio.run(detail_load(p, user.token, args.seconds, 64))
                    lat = load["latencies"]
                    rows.append(
                        (
                            "GET /user/ai/tasks/{taskNo}, 64 connections (httpx client)",
                            f"{load['rps']:.0f} req/s · p50 {pct(lat, 0.5) * 1000:.1f} ms · "
                            f"p99 {pct(lat, 0.99) * 1000:.1f} ms · errors {load['errors']}",
                        )
                    )
                p.audit()
            finally:
                p.stop()
    scaled(rows, args.scaled_tasks)
    width = max(len(r[0]) for r in rows)
    print(f"\nShengtu bench · {host.node()} · {host.machine()} · Python {host.python_version()}")
    print("-" * (width + 60))
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
