"""A database that goes away and comes back: 503s while it is gone, then everything resumes."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.databases import SERVERS, ScratchDatabase
from tests.support import CuttableProxy, Platform

TEXT = {"modelName": "sc_soraimg_text_1x1", "prompt": "断库测试"}


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_requests_get_503_while_the_database_is_down_and_work_resumes(
    tmp_path: Path, backend: str
) -> None:
    with ScratchDatabase(backend) as database:
        port = SERVERS[backend][1]
        proxy = CuttableProxy(port)
        url = database.url.replace(f"127.0.0.1:{port}", f"127.0.0.1:{proxy.port}")
        platform = Platform(
            tmp_path, database_url=url, SHENGTU_SANDBOX_LATENCY="1.5", SHENGTU_LEASE_SECONDS="3"
        ).start()
        try:
            user = platform.new_user(points=1000)
            numbers = [user.submit(**TEXT)["data"]["taskNo"] for _ in range(5)]
            proxy.cut()
            for method, path, body in [
                ("GET", "/user/points/consumption/balance", None),
                ("POST", "/user/ai/tasks/submit", TEXT),
                ("GET", "/healthz", None),
            ]:
                r = user.client.request(method, path, json=body)
                assert r.status_code == 503, (path, r.text)
                assert r.json()["code"] == 503 and "暂时不可用" in r.json()["message"]
            time.sleep(3)
            proxy.restore()

            done = [user.wait(n, timeout=60) for n in numbers]
            assert {d["status"] for d in done} == {"completed"}
            assert user.balance() == 1000 - 5 * 30  # the refused submit charged nothing
            assert user.submit(**TEXT)["code"] == 200
            assert httpx.get(platform.url + "/healthz").status_code == 200
            platform.audit()
        finally:
            platform.stop()
            proxy.close()
