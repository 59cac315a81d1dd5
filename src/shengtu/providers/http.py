"""What every HTTP upstream protocol shares: one aiohttp session per key, the key's pace,
the request log, and the line between a failure that certainly made no job and one whose
answer was lost after the request went out (uncertain)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from shengtu.logs import digest, get_logger
from shengtu.providers import exchanges
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
        self._secrets: tuple[str, ...] | None = None
        self._redactor: exchanges.Redactor | None = None

    @property
    def trusted_origins(self) -> frozenset[str]:
        return frozenset({origin(self.base_url)})

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={**self.key_headers(), "User-Agent": "Shengtu/0.1"},
                connector=aiohttp.TCPConnector(limit=self.connections, keepalive_timeout=30),
                trust_env=False,
                trace_configs=[_track_connection()],
            )
        return self._session

    def key_headers(self) -> dict[str, str]:
        """The headers that carry the key on every request of the session: an
        ``Authorization`` (a Bearer token, or the bare key as 速创 wants it) unless the
        protocol says otherwise (none at all where each request is signed)."""
        return {"Authorization": f"Bearer {self._key}" if self.bearer else self._key}

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

    def exchange_secrets(self) -> tuple[str, ...]:
        """What the kept exchanges must never hold (shengtu.providers.exchanges): the key,
        and each part of a key made of parts. A protocol that holds other secrets adds
        them here."""
        found: tuple[str, ...] | None = getattr(self, "_secrets", None)
        if found is None:
            found = self._secrets = exchanges.secrets_of(self._key)
        return found

    def exchange_redactor(self, body_bytes: int) -> exchanges.Redactor:
        """The redactor of this key's exchanges, made once: its secrets are the key's and
        never change (a changed key is a new provider)."""
        made: exchanges.Redactor | None = getattr(self, "_redactor", None)
        if made is None or made.body_bytes != body_bytes:
            made = self._redactor = exchanges.Redactor(self.exchange_secrets(), body_bytes)
        return made

    async def _send(
        self,
        method: str,
        path: str,
        *,
        task_no: str,
        logged: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Answer:
        """``logged``: more fields for the request's log line (digests, never bodies).
        While a worker's exchange log is set (shengtu.providers.exchanges), the request
        and its answer, or why there was none, are recorded there too."""
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
        book = exchanges.current()
        at = datetime.now(UTC).replace(tzinfo=None) if book is not None else None
        # Read before it goes: aiohttp empties a form as it sends it.
        asked = self._request_text(book, kwargs) if book is not None else None
        trace: dict[str, bool] = {"connected": False}
        sent: Iterable[tuple[str, str]] | None = None
        failure: str | None = None
        answer: Answer | None = None
        try:
            async with self._client().request(
                method,
                self.base_url + path,
                allow_redirects=False,
                trace_request_ctx=trace,
                **kwargs,
            ) as response:
                status, headers = response.status, response.headers
                if book is not None:
                    sent = response.request_info.headers.items()
                raw = await _read_capped(response, self.max_answer_bytes)
            answer = Answer(
                status, headers, raw[: self.max_answer_bytes], len(raw) > self.max_answer_bytes
            )
        except TimeoutError as exc:
            uncertain = trace["connected"]
            log.warning(
                "upstream_timeout",
                task_no=task_no,
                path=path,
                error=type(exc).__name__,
                uncertain=uncertain,
            )
            failure = _failure_note("上游接口超时", exc, uncertain)
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
            message = f"无法连接上游接口:{_connection_failure(exc)}"
            failure = _failure_note(message, exc, uncertain)
            raise UpstreamError(message, transient=True, uncertain=uncertain) from exc
        finally:
            if book is not None and at is not None:
                if answer is None and failure is None:
                    failure = _interrupted(sys.exc_info()[1], trace["connected"])
                self._record(book, at, started, method, path, kwargs, asked, sent, answer, failure)
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

    def _request_text(self, book: exchanges.ExchangeLog, kwargs: Mapping[str, Any]) -> str | None:
        try:
            return self.exchange_redactor(book.body_bytes).request_body(kwargs)
        except Exception:
            log.exception("upstream_exchange_not_recorded", protocol=self.name)
            return "<无法记录的请求内容>"

    def _record(
        self,
        book: exchanges.ExchangeLog,
        at: datetime,
        started: float,
        method: str,
        path: str,
        kwargs: Mapping[str, Any],
        asked: str | None,
        sent: Iterable[tuple[str, str]] | None,
        answer: Answer | None,
        failure: str | None,
    ) -> None:
        """The exchange, as the operator may read it, into ``book``; a failure to record
        it is logged, never raised: the task goes on."""
        try:
            redactor = self.exchange_redactor(book.body_bytes)
            if sent is None:
                session = self._session
                merged = dict(session.headers) if session is not None else {}
                merged.update(kwargs.get("headers") or {})
                sent = merged.items()
            content_type = answer.headers.get("Content-Type", "") if answer else ""
            book.exchanges.append(
                exchanges.Exchange(
                    protocol=self.name,
                    method=method,
                    url=redactor.url(self.base_url + path, kwargs.get("params")),
                    request_headers=redactor.sent_headers(sent),
                    request_body=asked,
                    status=answer.status if answer else None,
                    response_headers=redactor.answer_headers(answer.headers.items())
                    if answer
                    else {},
                    response_body=redactor.response_body(answer.raw, content_type, answer.too_long)
                    if answer
                    else None,
                    error=redactor.text(failure) if failure else None,
                    elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
                    at=at,
                )
            )
        except Exception:
            log.exception("upstream_exchange_not_recorded", protocol=self.name, path=path)


def _interrupted(exc: BaseException | None, connected: bool) -> str:
    reached = "请求可能已到达上游" if connected else "请求未到达上游"
    if exc is None or isinstance(exc, asyncio.CancelledError):
        # The task's deadline, or the process stopping.
        return f"请求被中断(任务时限已到或进程停止;{reached})"
    return f"请求失败({type(exc).__name__};{reached})"


def _failure_note(message: str, exc: BaseException, uncertain: bool) -> str:
    """Why an exchange had no answer, for the operator: the task's message, the error's
    kind, and whether the request may have reached the upstream."""
    reached = "请求可能已到达上游" if uncertain else "请求未到达上游"
    return f"{message}({type(exc).__name__};{reached})"
