"""The 速创 upstream (``shared/spec/UPSTREAM.md``): every mapping of its answers in this file."""

from __future__ import annotations

import json
from typing import Any

from shengtu.logs import digest, get_logger
from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.http import HttpUpstream, status_error

log = get_logger("shengtu.upstream")

# data.status of the detail endpoint → our phase
STATUS_MAP = {0: "queued", 1: "processing", 2: "succeeded", 3: "failed"}
# An API answer is a few hundred bytes; more than this is not one.
MAX_ANSWER_BYTES = 1024 * 1024


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


class SuChuangProvider(HttpUpstream):
    """The upstream's API over aiohttp.

    The one outbound client here that is not httpx (DESIGN says httpx): a worker polls
    every task in flight, 500 polls a second at 5,000 tasks and a 10 s interval, and httpx
    spent 0.6–1.4 ms of CPU per request under that concurrency, aiohttp 0.09 ms (measured
    against the same local server). Downloads of results stay on httpx (storage/fetch.py):
    one per task, with SSRF pinning.
    """

    name = "suchuang"
    # Its key goes bare, not as a Bearer token; kept-alive connections enough for the
    # upstream's whole rate limit.
    bearer = False
    connections = 32
    max_answer_bytes = MAX_ANSWER_BYTES

    async def _call(self, method: str, path: str, *, task_no: str, **kwargs: Any) -> dict[str, Any]:
        sent = kwargs.get("json")
        log.debug("upstream_request_body", task_no=task_no, body=sent)
        answer = await self._send(
            method,
            path,
            task_no=task_no,
            logged={
                "body": digest(sent) if sent is not None else None,
                "params": kwargs.get("params"),
            },
            **kwargs,
        )
        if answer.too_long:
            raise UpstreamError("上游返回的内容过大", transient=True)
        status, headers, text = answer.status, answer.headers, answer.text
        log.debug("upstream_response_body", task_no=task_no, body=text[:4000])
        failure = status_error(status, headers)
        if failure is not None:
            raise failure
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
        # job.count is not sent: a 速创 task makes one picture; the worker refunds the rest.
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
