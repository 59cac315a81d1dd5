"""What every HTTP upstream protocol shares: one aiohttp session per key, the key's pace,
the request log, and the line between a failure that certainly made no job and one whose
answer was lost after the request went out (uncertain)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from shengtu.logs import digest, get_logger
from shengtu.providers.base import UpstreamError
from shengtu.providers.pacing import LocalPacer, Pacer
from shengtu.providers.suchuang import _connection_failure, _read_capped, _track_connection
from shengtu.storage.fetch import origin

log = get_logger("shengtu.upstream")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes
    too_long: bool

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")


class HttpUpstream:
    """Base of a protocol's provider: ``_send`` returns the upstream's answer, whatever
    its status, or raises the UpstreamError of a transport failure."""

    name = "http"
    wants_image_bytes = False
    polls = True
    max_answer_bytes = 1024 * 1024

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
                headers={"Authorization": f"Bearer {self._key}", "User-Agent": "Shengtu/0.1"},
                connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=30),
                trust_env=False,
                trace_configs=[_track_connection()],
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _send(self, method: str, path: str, *, task_no: str, **kwargs: Any) -> Answer:
        await self._pacer.wait()
        started = time.perf_counter()
        log.info("upstream_request", protocol=self.name, task_no=task_no, method=method, path=path)
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
            log.warning("upstream_timeout", task_no=task_no, path=path, uncertain=uncertain)
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
            body=digest(answer.text[:4000]),
        )
        return answer
