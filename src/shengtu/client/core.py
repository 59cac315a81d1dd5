"""Typed sync and async clients of the Shengtu API, on httpx.

Submits carry an ``Idempotency-Key`` the client makes itself, and a retry after a
network error, a 5xx or a 429 sends the same key: the platform answers it with the task
it already made, so a retry never charges twice. ``generate`` follows the task over the
WebSocket and falls back to polling when the socket cannot be opened or drops.

The API key goes only to the base URL's origin (scheme, host, port). A picture's
``resultUrl`` may name any host (a CDN, an S3 bucket's public URL): a download carries no
credentials at all, redirects included.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import httpx

from shengtu.logs import get_logger

TERMINAL = ("completed", "failed")
log = get_logger("shengtu.client")
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
Progress = Callable[["Task"], None]


class ShengtuAPIError(Exception):
    """An answer in the envelope with ``code`` other than 200."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass(frozen=True)
class Task:
    task_no: str
    model_name: str
    status: str
    task_type: str
    progress: int
    prompt_snippet: str
    result_url: str | None
    error_message: str | None
    points_cost: int
    create_time: str
    complete_time: str | None
    # Every delivered picture (the first is result_url), the pictures asked and made, the
    # points given back, the values chosen.
    result_urls: tuple[str, ...] = ()
    pictures: int = 1
    delivered: int | None = None
    points_refunded: int = 0
    parameters: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def of(cls, data: dict[str, Any]) -> Task:
        return cls(
            task_no=data["taskNo"],
            model_name=data["modelName"],
            status=data["status"],
            task_type=data["taskType"],
            progress=int(data.get("progress") or 0),
            prompt_snippet=data.get("promptSnippet") or "",
            result_url=data.get("resultUrl"),
            error_message=data.get("errorMessage"),
            points_cost=int(data.get("pointsCost") or 0),
            create_time=data.get("createTime") or "",
            complete_time=data.get("completeTime"),
            result_urls=tuple(data.get("resultUrls") or ()),
            pictures=int(data.get("pictures") or 1),
            delivered=data.get("delivered"),
            points_refunded=int(data.get("pointsRefunded") or 0),
            parameters=data.get("parameters"),
        )


@dataclass(frozen=True)
class Quote:
    """What a request would cost the calling user, and whether the balance covers it."""

    model_name: str
    each: int
    n: int
    total: int
    balance: int
    affordable: bool
    parameters: dict[str, Any]

    @classmethod
    def of(cls, data: dict[str, Any]) -> Quote:
        return cls(
            model_name=data["modelName"],
            each=int(data["each"]),
            n=int(data["n"]),
            total=int(data["total"]),
            balance=int(data["balance"]),
            affordable=bool(data["affordable"]),
            parameters=dict(data.get("parameters") or {}),
        )


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    points: int
    task_type: str
    aspect_ratio: str | None


@dataclass(frozen=True)
class Balance:
    balance: int
    user_id: int


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port, with the scheme's default port spelled out."""
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, port


class _KeyForOrigin(httpx.Auth):
    """``Authorization: Bearer <key>`` on requests to the base URL's origin, and on no
    other. The API calls follow no redirects; a download sends no credentials at all."""

    def __init__(self, base_url: str, key: str) -> None:
        self.origin = _origin(httpx.URL(base_url))
        self.header = f"Bearer {key}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if _origin(request.url) == self.origin:
            request.headers["Authorization"] = self.header
        yield request


# A download's auth: none, whatever the client's (httpx.Auth itself sends the request as is).
_ANONYMOUS = httpx.Auth()


def _settings(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    url = (base_url or os.environ.get("SHENGTU_API_URL") or "http://localhost:8081").rstrip("/")
    key = api_key or os.environ.get("SHENGTU_API_KEY") or ""
    if not key:
        raise ValueError("需要 API Key:传入 api_key 或设置环境变量 SHENGTU_API_KEY")
    return url, key


def _data(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        raise ShengtuAPIError(response.status_code, response.text[:200]) from None
    if not isinstance(body, dict) or body.get("code") != 200:
        message = body.get("message", "") if isinstance(body, dict) else str(body)[:200]
        raise ShengtuAPIError(int(body.get("code", response.status_code)), message)
    return body["data"]


def _submit_body(
    model: str,
    prompt: str,
    image_urls: list[str] | None,
    callback_url: str | None,
    parameters: dict[str, Any] | None = None,
    n: int = 1,
) -> dict[str, Any]:
    body: dict[str, Any] = {"modelName": model, "prompt": prompt}
    if image_urls:
        body["imageUrl"] = image_urls if len(image_urls) > 1 else image_urls[0]
    if callback_url:
        body["callbackUrl"] = callback_url
    if parameters:
        body["parameters"] = parameters
    if n != 1:
        body["n"] = n
    return body


def _quote_body(
    model: str, parameters: dict[str, Any] | None, n: int, references: int
) -> dict[str, Any]:
    body: dict[str, Any] = {"modelName": model, "n": n, "references": references}
    if parameters:
        body["parameters"] = parameters
    return body


def _ws_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path + "/ws/tasks", "", ""))


def _retry_wait(attempt: int, response: httpx.Response | None) -> float:
    after = response.headers.get("retry-after") if response is not None else None
    if after and after.isdigit():
        return min(float(after), 30.0)
    return min(0.5 * 2.0**attempt, 8.0)


def _read_picture(image: str | Path | bytes) -> bytes:
    return image if isinstance(image, bytes) else Path(image).read_bytes()


class Client:
    """The sync client. ``base_url`` and ``api_key`` default to ``SHENGTU_API_URL`` and
    ``SHENGTU_API_KEY``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        poll_interval: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, self._key = _settings(base_url, api_key)
        self.max_retries = max_retries
        self.poll_interval = poll_interval
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=_KeyForOrigin(self.base_url, self._key),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response: httpx.Response | None = None
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt == self.max_retries:
                    raise
                time.sleep(_retry_wait(attempt, None))
                continue
            if response.status_code in RETRIED_STATUSES and attempt < self.max_retries:
                time.sleep(_retry_wait(attempt, response))
                continue
            return _data(response)
        assert response is not None
        return _data(response)

    def models(self) -> list[Model]:
        return [
            Model(
                m["modelName"],
                m["description"],
                m["pointsCost"],
                m["taskType"],
                m.get("aspectRatio"),
            )
            for m in self._request("GET", "/user/ai/models")
        ]

    def balance(self) -> Balance:
        data = self._request("GET", "/user/points/consumption/balance")
        return Balance(int(data["balance"]), int(data["userId"]))

    def upload(self, image: str | Path | bytes) -> str:
        """Store a reference picture; its URL for ``imageUrl``."""
        files = {"file": ("image", _read_picture(image))}
        return str(self._request("POST", "/user/files/upload", files=files)["url"])

    def submit(
        self,
        model: str,
        prompt: str,
        *,
        image_urls: list[str] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        parameters: dict[str, Any] | None = None,
        n: int = 1,
    ) -> Task:
        """One task (of ``n`` pictures, with the model's ``parameters``). Retries send the
        same Idempotency-Key: never a second charge."""
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        body = _submit_body(model, prompt, image_urls, callback_url, parameters, n)
        return Task.of(self._request("POST", "/user/ai/tasks/submit", json=body, headers=headers))

    def quote(
        self,
        model: str,
        *,
        parameters: dict[str, Any] | None = None,
        n: int = 1,
        references: int = 0,
    ) -> Quote:
        """What a submit would cost, without submitting it."""
        body = _quote_body(model, parameters, n, references)
        return Quote.of(self._request("POST", "/user/ai/quote", json=body))

    def task(self, task_no: str) -> Task:
        return Task.of(self._request("GET", f"/user/ai/tasks/{task_no}"))

    def tasks(self, *, page: int = 1, size: int = 10, status: str | None = None) -> list[Task]:
        params: dict[str, Any] = {"page": page, "size": size}
        if status:
            params["status"] = status
        data = self._request("GET", "/user/ai/tasks/list", params=params)
        return [Task.of(t) for t in data["records"]]

    def wait(
        self, task_no: str, *, on_progress: Progress | None = None, timeout: float = 900.0
    ) -> Task:
        """The task once it has ended: by the WebSocket, else by polling."""
        deadline = time.monotonic() + timeout
        task = self.task(task_no)
        if on_progress:
            on_progress(task)
        if task.done:
            return task
        try:
            from websockets.sync.client import connect

            with connect(
                _ws_url(self.base_url),
                additional_headers={"Authorization": f"Bearer {self._key}"},
                open_timeout=10,
            ) as ws:
                # Whatever changed before the socket opened.
                task = self.task(task_no)
                while not task.done and time.monotonic() < deadline:
                    if on_progress:
                        on_progress(task)
                    try:
                        raw = ws.recv(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
                    except TimeoutError:
                        task = self.task(task_no)
                        continue
                    event = json.loads(raw)
                    data = event.get("data") or {}
                    if data.get("taskNo") == task_no:
                        task = Task.of(data)
        except Exception as exc:  # any socket trouble: poll instead
            log.debug("websocket_unavailable", error=type(exc).__name__)
        while not task.done and time.monotonic() < deadline:
            if on_progress:
                on_progress(task)
            time.sleep(self.poll_interval)
            task = self.task(task_no)
        if on_progress:
            on_progress(task)
        if not task.done:
            raise TimeoutError(f"任务 {task_no} 在 {timeout:g} 秒内没有结束")
        return task

    def generate(
        self,
        model: str,
        prompt: str,
        *,
        images: list[str | Path | bytes] | None = None,
        on_progress: Progress | None = None,
        timeout: float = 900.0,
        idempotency_key: str | None = None,
        parameters: dict[str, Any] | None = None,
        n: int = 1,
    ) -> Task:
        """Submit (uploading ``images`` first) and return the task once it has ended."""
        urls = [self.upload(i) for i in images or []]
        task = self.submit(
            model,
            prompt,
            image_urls=urls,
            idempotency_key=idempotency_key,
            parameters=parameters,
            n=n,
        )
        return self.wait(task.task_no, on_progress=on_progress, timeout=timeout)

    def download(self, task: Task, path: str | Path) -> Path:
        if not task.result_url:
            raise ShengtuAPIError(
                404, f"任务 {task.task_no} 没有图片({task.error_message or task.status})"
            )
        response = self._http.get(task.result_url, auth=_ANONYMOUS, follow_redirects=True)
        response.raise_for_status()
        target = Path(path)
        target.write_bytes(response.content)
        return target


class AsyncClient:
    """The async client: the same calls as :class:`Client`, awaited."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        poll_interval: float = 1.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url, self._key = _settings(base_url, api_key)
        self.max_retries = max_retries
        self.poll_interval = poll_interval
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=_KeyForOrigin(self.base_url, self._key),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response: httpx.Response | None = None
        for attempt in range(self.max_retries + 1):
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt == self.max_retries:
                    raise
                await asyncio.sleep(_retry_wait(attempt, None))
                continue
            if response.status_code in RETRIED_STATUSES and attempt < self.max_retries:
                await asyncio.sleep(_retry_wait(attempt, response))
                continue
            return _data(response)
        assert response is not None
        return _data(response)

    async def balance(self) -> Balance:
        data = await self._request("GET", "/user/points/consumption/balance")
        return Balance(int(data["balance"]), int(data["userId"]))

    async def upload(self, image: str | Path | bytes) -> str:
        files = {"file": ("image", _read_picture(image))}
        return str((await self._request("POST", "/user/files/upload", files=files))["url"])

    async def submit(
        self,
        model: str,
        prompt: str,
        *,
        image_urls: list[str] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        parameters: dict[str, Any] | None = None,
        n: int = 1,
    ) -> Task:
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        body = _submit_body(model, prompt, image_urls, callback_url, parameters, n)
        data = await self._request("POST", "/user/ai/tasks/submit", json=body, headers=headers)
        return Task.of(data)

    async def quote(
        self,
        model: str,
        *,
        parameters: dict[str, Any] | None = None,
        n: int = 1,
        references: int = 0,
    ) -> Quote:
        body = _quote_body(model, parameters, n, references)
        return Quote.of(await self._request("POST", "/user/ai/quote", json=body))

    async def task(self, task_no: str) -> Task:
        return Task.of(await self._request("GET", f"/user/ai/tasks/{task_no}"))

    async def tasks(
        self, *, page: int = 1, size: int = 10, status: str | None = None
    ) -> list[Task]:
        params: dict[str, Any] = {"page": page, "size": size}
        if status:
            params["status"] = status
        data = await self._request("GET", "/user/ai/tasks/list", params=params)
        return [Task.of(t) for t in data["records"]]

    async def wait(
        self, task_no: str, *, on_progress: Progress | None = None, within: float = 900.0
    ) -> Task:
        deadline = time.monotonic() + within
        task = await self.task(task_no)
        if task.done:
            return task
        try:
            from websockets.asyncio.client import connect

            async with connect(
                _ws_url(self.base_url),
                additional_headers={"Authorization": f"Bearer {self._key}"},
                open_timeout=10,
            ) as ws:
                task = await self.task(task_no)
                while not task.done and time.monotonic() < deadline:
                    if on_progress:
                        on_progress(task)
                    try:
                        raw = await asyncio.wait_for(
                            ws.recv(), max(0.1, min(5.0, deadline - time.monotonic()))
                        )
                    except TimeoutError:
                        task = await self.task(task_no)
                        continue
                    data = json.loads(raw).get("data") or {}
                    if data.get("taskNo") == task_no:
                        task = Task.of(data)
        except Exception as exc:  # any socket trouble: poll instead
            log.debug("websocket_unavailable", error=type(exc).__name__)
        while not task.done and time.monotonic() < deadline:
            if on_progress:
                on_progress(task)
            await asyncio.sleep(self.poll_interval)
            task = await self.task(task_no)
        if on_progress:
            on_progress(task)
        if not task.done:
            raise TimeoutError(f"任务 {task_no} 在 {within:g} 秒内没有结束")
        return task

    async def generate(
        self,
        model: str,
        prompt: str,
        *,
        images: list[str | Path | bytes] | None = None,
        on_progress: Progress | None = None,
        within: float = 900.0,
        idempotency_key: str | None = None,
        parameters: dict[str, Any] | None = None,
        n: int = 1,
    ) -> Task:
        urls = [await self.upload(i) for i in images or []]
        task = await self.submit(
            model,
            prompt,
            image_urls=urls,
            idempotency_key=idempotency_key,
            parameters=parameters,
            n=n,
        )
        return await self.wait(task.task_no, on_progress=on_progress, within=within)

    async def download(self, task: Task, path: str | Path) -> Path:
        if not task.result_url:
            raise ShengtuAPIError(
                404, f"任务 {task.task_no} 没有图片({task.error_message or task.status})"
            )
        response = await self._http.get(task.result_url, auth=_ANONYMOUS, follow_redirects=True)
        response.raise_for_status()
        target = Path(path)
        await asyncio.to_thread(target.write_bytes, response.content)
        return target
