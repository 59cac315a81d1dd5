"""Shengtu's edge (request id, edge guard, hot reads) wraps FastAPI's whole stack.

So a request FastAPI's own error layer answers (a crash in a route) still carries its
request id, in the response header and in the error's log line.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import structlog

from shengtu.app import create_app
from shengtu.assembly import build_context
from shengtu.config import Settings
from shengtu.logs import configure_logging


def test_a_crash_is_answered_in_the_envelope_with_its_request_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path, log_format="json")
    configure_logging(settings)  # to the captured stderr
    ctx = build_context(settings, role="api")
    app = create_app(ctx, with_worker=False)

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/crash", headers={"X-Request-ID": "crash-1"})

    try:
        response = asyncio.run(go())
    finally:
        structlog.reset_defaults()
    assert response.status_code == 500
    assert response.json() == {"code": 500, "message": "服务器错误", "data": None}
    assert response.headers["x-request-id"] == "crash-1"
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    crashes = [e for e in logged if e.get("event") == "unhandled_error"]
    assert crashes and crashes[0]["request_id"] == "crash-1"
    access = [e for e in logged if e.get("event") == "request"]
    assert [(e["path"], e["status"], e["request_id"]) for e in access] == [
        ("/crash", 500, "crash-1")
    ]
