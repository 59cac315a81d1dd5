"""What every HTTP upstream protocol shares: one aiohttp session per key, the key's pace,
the request log, and the line between a failure that certainly made no job and one whose
answer was lost after the request went out (uncertain)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from shengtu.logs import digest, get_logger
from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.pacing import LocalPacer, Pacer
from shengtu.storage.fetch import origin

log = get_logger("shengtu.upstream")


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


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes
    too_long: bool

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")

    def json_or_none(self) -> Any:
        """The parsed body, or None when it is cut off or not JSON."""
        if self.too_long:
            return None
        try:
            return json.loads(self.text)
        except ValueError:
            return None


def status_error(
    status: int, headers: Mapping[str, str], *, also_transient: tuple[int, ...] = ()
) -> UpstreamError | None:
    """What every protocol makes of these statuses: 429 a rate limit, 401/403 a refused
    key, 5xx (and ``also_transient``) a failure that made no job."""
    if status == 429:
        return UpstreamError(
            "上游限流(HTTP 429)",
            transient=True,
            retry_after=_retry_after(headers),
            http_status=status,
        )
    if status in (401, 403):
        return UpstreamError(
            "上游鉴权失败,请检查上游密钥配置",
            transient=False,
            key_rejected=True,
            http_status=status,
        )
    if status >= 500 or status in also_transient:
        return UpstreamError(
            f"上游服务错误(HTTP {status})",
            transient=True,
            retry_after=_retry_after(headers),
            http_status=status,
        )
    return None


class HttpUpstream:
    """Base of a protocol's provider: ``_send`` returns the upstream's answer, whatever
    its status, or raises the UpstreamError of a transport failure."""

    name = "http"
    wants_image_bytes = False
    polls = True
    max_answer_bytes = 1024 * 1024
    # The key as a Bearer token (else bare, as 速创 wants it); kept-alive connections.
    bearer = True
    connections = 64

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        rps: float = 5.0,
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
                headers={
                    "Authorization": f"Bearer {self._key}" if self.bearer else self._key,
                    "User-Agent": "Shengtu/0.1",
                },
                connector=aiohttp.TCPConnector(limit=self.connections, keepalive_timeout=30),
                trust_env=False,
                trace_configs=[_track_connection()],
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    # What each protocol defines (see shengtu.providers.base.Provider).
    async def submit(self, job: UpstreamJob) -> UpstreamState:
        raise NotImplementedError

    async def poll(self, upstream_id: str, task_no: str = "") -> UpstreamState:
        raise NotImplementedError

    async def check(self) -> None:
        raise NotImplementedError

    async def _send(
        self,
        method: str,
        path: str,
        *,
        task_no: str,
        logged: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Answer:
        """``logged``: more fields for the request's log line (digests, never bodies)."""
        await self._pacer.wait()
        started = time.perf_counter()
        log.info(
            "upstream_request",
            protocol=self.name,
            task_no=task_no,
            method=method,
            path=path,
            **(logged or {}),
        )
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
                raw = await _read_capped(response, self.max_answer_bytes)
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
        answer = Answer(
            status, headers, raw[: self.max_answer_bytes], len(raw) > self.max_answer_bytes
        )
        log.info(
            "upstream_response",
            protocol=self.name,
            task_no=task_no,
            path=path,
            status=status,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
            body=digest(answer.text),
        )
        return answer
