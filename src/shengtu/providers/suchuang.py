"""The 速创 upstream (``shared/spec/UPSTREAM.md``): every mapping of its answers in this file."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from shengtu.logs import digest, get_logger
from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.pacing import LocalPacer, Pacer
from shengtu.storage.fetch import origin

log = get_logger("shengtu.upstream")

# data.status of the detail endpoint → our phase
STATUS_MAP = {0: "queued", 1: "processing", 2: "succeeded", 3: "failed"}
# An API answer is a few hundred bytes; more than this is not one.
MAX_ANSWER_BYTES = 1024 * 1024


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after", "")
    try:
        return max(0.0, min(float(value), 300.0))
    except ValueError:
        return None


def _track_connection() -> aiohttp.TraceConfig:
    """Marks a request's trace context once it has a connection: from then on a lost
    answer is uncertain (the request may have reached the upstream); before, it is not."""

    async def connected(_: Any, context: Any, __: Any) -> None:
        if isinstance(context.trace_request_ctx, dict):
            context.trace_request_ctx["connected"] = True

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(connected)
    trace.on_connection_reuseconn.append(connected)
    return trace


def _connection_failure(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "连接被拒绝或地址不可达"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "上游断开了连接"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "上游的回答不完整"
    return type(exc).__name__


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or its first ``limit + 1`` bytes when it is longer (the caller refuses it)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


def _key_refused(message: str) -> str | None:
    """What to tell the admin when a refusal is about the key, not the task."""
    if "无效" in message and ("key" in message.lower() or "密钥" in message):
        return "上游鉴权失败,请检查上游密钥配置"
    if "余额不足" in message or "余额已用完" in message or "额度不足" in message:
        return "上游账户余额不足"
    return None


def _message(body: dict[str, Any]) -> str:
    msg = body.get("msg") or body.get("message") or ""
    return str(msg)[:500] if msg else "未知错误"


class SuChuangProvider:
    """The upstream's API over aiohttp.

    The one outbound client here that is not httpx (DESIGN says httpx): a worker polls
    every task in flight, 500 polls a second at 5,000 tasks and a 10 s interval, and httpx
    spent 0.6–1.4 ms of CPU per request under that concurrency, aiohttp 0.09 ms (measured
    against the same local server). Downloads of results stay on httpx (storage/fetch.py):
    one per task, with SSRF pinning.
    """

    name = "suchuang"
    wants_image_bytes = False
    polls = True

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        rps: float = 15.0,
        pacer: Pacer | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(10.0, timeout))
        self._session: aiohttp.ClientSession | None = None
        self._pacer = pacer or LocalPacer(rps)

    @property
    def trusted_origins(self) -> frozenset[str]:
        return frozenset({origin(self.base_url)})

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"Authorization": self._key, "User-Agent": "Shengtu/0.1"},
                # Kept-alive connections, enough for the upstream's whole rate limit.
                connector=aiohttp.TCPConnector(limit=32, keepalive_timeout=30),
                trust_env=False,
                trace_configs=[_track_connection()],
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, *, task_no: str, **kwargs: Any) -> dict[str, Any]:
        await self._pacer.wait()
        started = time.perf_counter()
        sent = kwargs.get("json")
        log.info(
            "upstream_request",
            task_no=task_no,
            method=method,
            path=path,
            body=digest(sent) if sent is not None else None,
            params=kwargs.get("params"),
        )
        log.debug("upstream_request_body", task_no=task_no, body=sent)
        trace: dict[str, bool] = {"connected": False}
        try:
            async with self._client().request(
                method,
                self.base_url + path,
                allow_redirects=False,
                trace_request_ctx=trace,
                **kwargs,
            ) as response:
                status, headers = response.status, response.headers
                raw = await _read_capped(response, MAX_ANSWER_BYTES)
        except TimeoutError as exc:
            uncertain = trace["connected"]
            log.warning(
                "upstream_timeout",
                task_no=task_no,
                path=path,
                error=type(exc).__name__,
                uncertain=uncertain,
            )
            raise UpstreamError("上游接口超时", transient=True, uncertain=uncertain) from exc
        except (aiohttp.ClientError, OSError) as exc:
            uncertain = trace["connected"] and not isinstance(exc, aiohttp.ClientConnectorError)
            log.warning(
                "upstream_unreachable",
                task_no=task_no,
                path=path,
                error=repr(exc),
                uncertain=uncertain,
            )
            raise UpstreamError(
                f"无法连接上游接口:{_connection_failure(exc)}", transient=True, uncertain=uncertain
            ) from exc
        if len(raw) > MAX_ANSWER_BYTES:
            raise UpstreamError("上游返回的内容过大", transient=True)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        text = raw.decode("utf-8", errors="replace")
        log.info(
            "upstream_response",
            task_no=task_no,
            path=path,
            status=status,
            elapsed_ms=elapsed_ms,
            body=digest(text),
        )
        log.debug("upstream_response_body", task_no=task_no, body=text[:4000])
        if status == 429:
            raise UpstreamError(
                "上游限流(HTTP 429)",
                transient=True,
                retry_after=_retry_after(headers),
                http_status=status,
            )
        if status >= 500:
            raise UpstreamError(
                f"上游服务错误(HTTP {status})",
                transient=True,
                retry_after=_retry_after(headers),
                http_status=status,
            )
        if status in (401, 403):
            raise UpstreamError(
                "上游鉴权失败,请检查上游密钥配置",
                transient=False,
                key_rejected=True,
                http_status=status,
            )
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise UpstreamError(
                "上游返回了无法解析的内容", transient=True, http_status=status
            ) from exc
        if not isinstance(body, dict):
            raise UpstreamError("上游返回了无法解析的内容", transient=True, http_status=status)
        if status >= 400:
            raise UpstreamError(
                f"上游拒绝请求: {_message(body)}", transient=False, http_status=status
            )
        return body

    async def submit(self, job: UpstreamJob) -> UpstreamState:
        payload: dict[str, Any] = {"prompt": job.prompt, **job.params}
        if job.image_urls:
            payload["urls"] = job.image_urls
        body = await self._call(
            "POST", f"/api/async/{job.upstream_model}", task_no=job.task_no, json=payload
        )
        code = body.get("code")
        if code != 200:
            message = _message(body)
            rejected = _key_refused(message)
            if rejected:
                message = rejected
            raise UpstreamError(
                f"上游拒绝任务: {message}", transient=False, key_rejected=bool(rejected)
            )
        data = body.get("data")
        upstream_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(upstream_id, str) or not upstream_id:
            raise UpstreamError("上游接受了任务但未返回任务编号", transient=True)
        return UpstreamState(upstream_id=upstream_id, phase="queued", raw_status="accepted")

    async def poll(self, upstream_id: str, task_no: str = "") -> UpstreamState:
        body = await self._call(
            "GET", "/api/async/detail", task_no=task_no, params={"id": upstream_id}
        )
        if body.get("code") != 200:
            raise UpstreamError(f"上游查询失败: {_message(body)}", transient=False)
        data = body.get("data")
        if not isinstance(data, dict):
            raise UpstreamError("上游查询结果缺少 data", transient=True)
        status = data.get("status")
        phase = STATUS_MAP.get(status) if isinstance(status, int) else None
        if phase is None:
            raise UpstreamError(f"上游返回未知状态: {str(status)[:40]}", transient=True)
        progress = data.get("progress")
        progress = int(progress) if isinstance(progress, int | float) else None
        if phase == "succeeded":
            urls = data.get("result") or data.get("remote_url") or []
            if isinstance(urls, str):
                urls = [urls]
            urls = [u for u in urls if isinstance(u, str) and u]
            if not urls:
                raise UpstreamError("上游报告成功但没有返回图片地址", transient=True)
            return UpstreamState(upstream_id, "succeeded", str(status), 100, tuple(urls))
        if phase == "failed":
            reason = data.get("message") or data.get("fail_reason") or "上游生成失败"
            return UpstreamState(upstream_id, "failed", str(status), error=str(reason)[:500])
        return UpstreamState(upstream_id, phase, str(status), progress)  # type: ignore[arg-type]

    async def check(self) -> None:
        # The detail of a job that does not exist: free, and it proves the key.
        try:
            await self.poll("shengtu-check-0", "")
        except UpstreamError as exc:
            if exc.transient or exc.key_rejected:
                raise
