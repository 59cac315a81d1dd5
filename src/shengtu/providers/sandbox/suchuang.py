"""The 速创 double: ``/api/async/{slug}`` submits, ``/api/async/detail`` polls, the key in
the ``Authorization`` header or ``?key=``. A job goes 0 → 1 (with progress) → 2 or 3;
``fail`` ends it with status 3 and a Chinese message, ``error500`` is a plain-text 500,
``slowsubmit`` makes the job late, and the poll faults spoil ``detail``."""

from __future__ import annotations

import math
import time
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shengtu.providers.sandbox.common import (
    FAIL_MESSAGE,
    SLOW_SECONDS,
    SUCHUANG_SIZES,
    Double,
    parse_directive,
    parse_job_id,
    result_url,
    retry_after_headers,
)


def _reply(
    code: int, msg: str, data: Any, status: int = 200, retry_after: int | None = None
) -> JSONResponse:
    return JSONResponse(
        {"code": code, "msg": msg, "data": data, "exec_time": 0.01},
        status_code=status,
        headers=retry_after_headers(retry_after),
    )


class SuChuangDouble(Double):
    def routes(self) -> list[Route]:
        return [
            self.route("/api/async/detail", self.detail, "GET"),
            self.route("/api/async/{slug}", self.submit, "POST"),
        ]

    def key(self, request: Request) -> str:
        return request.headers.get("authorization") or request.query_params.get("key") or ""

    def refused(self) -> Response:
        return _reply(401, "密钥无效", [], status=401)

    async def submit(self, request: Request) -> Response:
        state = self.state
        try:
            body = await request.json()
        except ValueError:
            return _reply(400, "请求体不是合法的 JSON", [])
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return _reply(400, "缺少 prompt 参数", [])
        prompt = body["prompt"]
        size = body.get("size", "auto")
        if size not in SUCHUANG_SIZES:
            return _reply(400, f"size 参数错误: {size}", [])
        urls = body.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            return _reply(400, "urls 参数必须是字符串数组", [])
        directive = parse_directive(prompt)
        if directive == "error500":
            return Response("Internal Server Error (sandbox)", status_code=500)
        if directive == "submit429" and state.throttle_once(prompt):
            return _reply(429, "请求过于频繁", [], status=429, retry_after=1)
        if directive == "slowsubmit":
            await anyio.sleep(SLOW_SECONDS)
        job_id = state.accept(prompt, size, directive)
        return _reply(200, "成功", {"id": job_id, "count": 1})

    async def detail(self, request: Request) -> Response:
        state = self.state
        state.polls += 1
        job_id = request.query_params.get("id", "")
        parsed = parse_job_id(job_id)
        if parsed is None:
            return _reply(400, "任务不存在", [])
        started_ms, _size, directive = parsed
        polled_at = time.time()
        state.record_poll(job_id, polled_at)
        if directive == "slowpoll":
            await anyio.sleep(SLOW_SECONDS)
        elif directive == "garbage":
            return Response(
                '{"code": 200, "data": {"status": 2, "result": [', media_type="application/json"
            )
        elif directive == "status7":
            return _reply(200, "成功", {"id": job_id, "status": 7, "result": []})
        elif directive == "poll429":
            return _reply(429, "请求过于频繁", [], status=429, retry_after=1)
        elapsed = time.time() - started_ms / 1000
        data: dict[str, Any] = {"id": job_id, "result": [], "message": None, "fail_reason": None}
        if elapsed < state.latency * 0.1:
            data.update(status=0, progress=0)
        elif directive == "timeout" or elapsed < state.latency:
            fraction = elapsed / state.latency if state.latency else 1.0
            data.update(status=1, progress=min(99, int(100 * (1 - math.exp(-3 * fraction)))))
        elif directive == "fail":
            data.update(status=3, message=FAIL_MESSAGE, fail_reason=FAIL_MESSAGE)
        else:
            data.update(status=2, progress=100, result=[result_url(request, job_id)])
            if job_id not in state.first_done:
                state.remember(state.first_done, job_id, polled_at, 100_000)
        return _reply(200, "成功", data)
