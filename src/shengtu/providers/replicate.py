"""Replicate predictions: create, poll, cancel. Every answer we give a meaning to is here.

- create: ``POST /v1/models/{owner}/{name}/predictions`` with ``{"input": {...}}`` (the
  channel model's ``upstreamModel`` is ``owner/name``; its ``upstreamParams`` go into
  ``input``, e.g. ``{"aspect_ratio": "1:1"}``). Reference pictures go as URLs, under the
  input field ``imageField`` names (``image`` unless set in ``upstreamParams``). A job of
  several pictures asks for them in ``num_outputs`` (left out for one).
- poll: ``GET /v1/predictions/{id}``: ``starting``, ``processing``, ``succeeded``
  (``output``: a URL or a list of them, which expire within an hour: the worker copies the
  picture at once), ``failed`` (``error``), ``canceled``. Its ``metrics`` (``predict_time``
  …, what Replicate bills by) are recorded as the job's usage.
- cancel: ``POST /v1/predictions/{id}/cancel``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from shengtu.providers.base import MODERATED, UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.http import HttpUpstream, status_error

PHASES = {
    "starting": "queued",
    "processing": "processing",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "failed",
}
CONTENT_WORDS = ("nsfw", "safety", "content policy", "sensitive")


class ReplicateProvider(HttpUpstream):
    name = "replicate"

    async def _json(
        self, method: str, path: str, *, task_no: str, creates: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        """The answer's JSON object; ``creates``: a 2xx we cannot read may hide a prediction
        made and paid for, so it is uncertain (not sent again)."""
        answer = await self._send(method, path, task_no=task_no, **kwargs)
        status = answer.status
        body = answer.json_or_none()
        detail = (
            str(body.get("detail") or body.get("title") or "")[:300]
            if isinstance(body, dict)
            else ""
        )
        failure = status_error(status, answer.headers, also_transient=(404,))
        if failure is not None:
            raise failure
        if status == 402:
            raise UpstreamError(
                "上游账户余额不足", transient=False, key_rejected=True, http_status=status
            )
        if status >= 400:
            raise UpstreamError(
                f"上游拒绝任务: {detail or f'HTTP {status}'}", transient=False, http_status=status
            )
        if not isinstance(body, dict):
            raise UpstreamError(
                "上游返回了无法解析的内容",
                transient=not creates,
                uncertain=creates,
                http_status=status,
            )
        return body

    async def submit(self, job: UpstreamJob) -> UpstreamState:
        params = dict(job.params)
        image_field = str(params.pop("imageField", "image"))
        payload: dict[str, Any] = {"prompt": job.prompt, **params}
        if job.count > 1:
            payload["num_outputs"] = job.count
        if job.image_urls:
            payload[image_field] = (
                job.image_urls[0] if len(job.image_urls) == 1 else list(job.image_urls)
            )
        owner, _, model = job.upstream_model.partition("/")
        if not owner or not model:
            raise UpstreamError(
                f"渠道配置错误:Replicate 模型须为 owner/name 形式: {job.upstream_model[:64]}",
                transient=True,
            )
        body = await self._json(
            "POST",
            f"/v1/models/{quote(owner, safe='')}/{quote(model, safe='')}/predictions",
            task_no=job.task_no,
            creates=True,
            json={"input": payload},
        )
        return self._state(body)

    def _state(self, body: dict[str, Any]) -> UpstreamState:
        upstream_id = body.get("id")
        if not isinstance(upstream_id, str) or not upstream_id:
            raise UpstreamError("上游接受了任务但未返回任务编号", transient=True, uncertain=True)
        status = str(body.get("status") or "")
        phase = PHASES.get(status)
        if phase is None:
            raise UpstreamError(f"上游返回未知状态: {status[:40]}", transient=True)
        metrics = body.get("metrics")
        usage = dict(metrics) if isinstance(metrics, dict) and metrics else None
        if phase == "succeeded":
            output = body.get("output")
            urls = [output] if isinstance(output, str) else output
            urls = [u for u in urls or [] if isinstance(u, str) and u]
            if not urls:
                raise UpstreamError("上游报告成功但没有返回图片地址", transient=True)
            return UpstreamState(upstream_id, "succeeded", status, 100, tuple(urls), usage=usage)
        if phase == "failed":
            error = str(body.get("error") or "")[:400]
            if status == "canceled":
                reason = "上游任务已取消"
            elif any(word in error.lower() for word in CONTENT_WORDS):
                reason = f"{MODERATED}:内容不符合上游的使用政策({error})"
            else:
                reason = f"图片生成失败:{error or '上游未说明原因'}"
            return UpstreamState(upstream_id, "failed", status, error=reason, usage=usage)
        return UpstreamState(upstream_id, phase, status, usage=usage)  # type: ignore[arg-type]

    async def poll(self, upstream_id: str, task_no: str = "") -> UpstreamState:
        body = await self._json(
            "GET", f"/v1/predictions/{quote(upstream_id, safe='')}", task_no=task_no
        )
        return self._state(body)

    async def cancel(self, upstream_id: str, task_no: str = "") -> UpstreamState:
        """The prediction as the cancel left it: ``canceled``, or done already."""
        body = await self._json(
            "POST", f"/v1/predictions/{quote(upstream_id, safe='')}/cancel", task_no=task_no
        )
        return self._state(body)

    async def check(self) -> None:
        await self._json("GET", "/v1/account", task_no="")
