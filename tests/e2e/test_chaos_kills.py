"""SIGKILL at random moments: workers while tasks run, the API process while submits
arrive. Every accepted task ends; every submit that was not accepted costs nothing."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.chaos import report
from tests.support import Platform, wait_http

LONG = os.environ.get("SHENGTU_CHAOS") == "1"
TASKS = 500 if LONG else 60
WORKER_KILLS = 20 if LONG else 4


@pytest.mark.timeout(1800 if LONG else 300)
def test_kills_lose_nothing(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("SHENGTU_CHAOS_SEED", "7")))
    platform = Platform.with_sandbox_process(
        tmp_path,
        SHENGTU_SANDBOX_LATENCY="1",
        SHENGTU_LEASE_SECONDS="2",
        SHENGTU_TASK_DEADLINE="300",
        SHENGTU_MAX_INFLIGHT_TASKS="100000",
        SHENGTU_LOG_LEVEL="WARNING",
    )
    platform.start()
    try:
        user = platform.new_user(points=TASKS * 30)
        accepted: list[str] = []
        unknown = 0
        refused = 0
        lock = threading.Lock()
        stop = threading.Event()

        def submitter(offset: int) -> None:
            nonlocal unknown, refused
            headers = {"Authorization": f"Bearer {user.token}"}
            i = offset
            while not stop.is_set() and i < TASKS:
                try:
                    r = httpx.post(
                        platform.url + "/user/ai/tasks/submit",
                        headers=headers,
                        json={"modelName": "sc_soraimg_text_1x1", "prompt": f"混沌 {i}"},
                        timeout=10,
                    )
                    body = r.json()
                    with lock:
                        if body.get("code") == 200:
                            accepted.append(body["data"]["taskNo"])
                        else:
                            refused += 1
                except (httpx.HTTPError, ValueError):
                    with lock:
                        unknown += 1  # the API died under it: maybe committed, maybe not
                    time.sleep(0.2)
                i += 4

        worker = platform.spawn("worker")
        threads = [threading.Thread(target=submitter, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        kills = 0
        api_kills = 0
        # Kills spread over the run: a worker that is killed faster than it can start
        # and outlive a lease makes no progress at all (the tasks would then fail at
        # their deadline, refunded, which is right but tests nothing more).
        while kills < WORKER_KILLS:
            time.sleep(rng.uniform(1.5, 4.0))
            worker.kill()
            kills += 1
            worker = platform.spawn("worker")
            if api_kills == 0 and len(accepted) > TASKS // 3:
                platform.server.kill()  # mid-submit: some requests die with it
                api_kills += 1
                platform.server = platform.spawn("serve", "--no-worker")
                wait_http(platform.url + "/healthz", platform.server)
        for t in threads:
            t.join()

        # Whatever exists now is what was charged; every one of them must end.
        records: list[dict[str, object]] = []
        page = 1
        while True:
            data = user.client.get(f"/user/ai/tasks/list?page={page}&size=100").json()["data"]
            records += data["records"]
            if page >= data["pages"]:
                break
            page += 1
        existing = {str(r["taskNo"]) for r in records}
        assert set(accepted) <= existing, "an accepted task was lost"
        assert len(existing) <= len(accepted) + unknown, "a task exists that no submit made"
        done = [user.wait(t, timeout=120) for t in sorted(existing)]
        assert {d["status"] for d in done} == {"completed"}, {d["status"] for d in done}
        assert user.balance() == TASKS * 30 - 30 * len(existing)
        audit = platform.audit()
        report(
            f"SIGKILL: {kills} workers, {api_kills} API mid-submit ({unknown} submits cut off)",
            cases=len(existing) + unknown + refused,
            tasks=len(existing),
            kills=kills + api_kills,
            violations=audit.count("[违反]"),
        )
    finally:
        platform.stop()
