"""Alibaba Cloud DashScope (百炼) 通义万相 image synthesis: create, poll, cancel. Every
answer we give a meaning to is here.

- create: ``POST /api/v1/services/aigc/text2image/image-synthesis`` (text to image) or
  ``POST /api/v1/services/aigc/image2image/image-synthesis`` (image to image), a
  ``Bearer`` key and ``X-DashScope-Async: enable`` (without it DashScope refuses the call:
  403 ``AccessDenied``, "current user api does not support synchronous calls"). The body is
  ``{"model", "input": {"prompt", "negative_prompt"?, ...}, "parameters": {"size": "W*H",
  "n", "seed"?, "prompt_extend"?, "watermark"?, ...}}``: the channel model's ``upstreamModel``
  is ``model``; of its params, ``INPUT_FIELDS`` go into ``input`` and the rest into
  ``parameters``. ``n`` is always sent (DashScope's own default is 4 pictures, each paid).
  An image-to-image job sends its first reference picture as ``input.base_image_url`` with
  ``input.function`` (``description_edit`` unless the params say otherwise), as
  wanx2.1-imageedit takes it; params ``{"imageField": "images"}`` send every reference as
  ``input.images`` instead, as wan2.5-i2i-preview takes them.
  The answer is ``{"output": {"task_id", "task_status": "PENDING"}, "request_id"}``.
- poll: ``GET /api/v1/tasks/{task_id}``: ``PENDING``, ``RUNNING``, ``SUCCEEDED``
  (``output.results``: a ``{"url"}`` per picture made, valid 24 hours, and a
  ``{"code", "message"}`` per picture that failed: the job delivers those it made),
  ``FAILED`` (``output.code``/``message``), ``CANCELED``, ``UNKNOWN`` (no such task: it
  never existed or is past its 24 hours). ``usage`` (``image_count``: the pictures billed)
  is recorded as the job's usage.
- cancel: ``POST /api/v1/tasks/{task_id}/cancel``, which DashScope honours only while the
  task is ``PENDING`` (else 400 ``UnsupportedOperation``: the task runs on, and is paid).
- errors: ``{"code", "message", "request_id"}``. 401 ``InvalidApiKey``, 403 ``AccessDenied``
  and 400 ``Arrearage`` (the account is overdue) refuse the key; 429 ``Throttling*`` and 5xx
  ``InternalError`` made no job; ``DataInspectionFailed`` (and ``IPInfringementSuspect``) is
  the content refusal, at create (the prompt or the reference picture) or at the end of
  the task (the picture made); any other 400 (``InvalidParameter`` …) refuses the task.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from shengtu.logs import digest
from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.http import HttpUpstream, status_error

TEXT_TO_IMAGE = "/api/v1/services/aigc/text2image/image-synthesis"
IMAGE_TO_IMAGE = "/api/v1/services/aigc/image2image/image-synthesis"
TASKS = "/api/v1/tasks"
ASYNC = {"X-DashScope-Async": "enable"}

PHASES = {
    "PENDING": "queued",
    "RUNNING": "processing",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "CANCELED": "failed",
    "UNKNOWN": "failed",
}
# The params of a job that DashScope reads from ``input``; every other one is a
# ``parameters`` field (size, seed, prompt_extend, watermark, strength …).
INPUT_FIELDS = frozenset({"negative_prompt", "function", "mask_image_url"})
# Ours, not DashScope's: which ``input`` field carries the reference pictures.
IMAGE_FIELD = "imageField"
DEFAULT_FUNCTION = "description_edit"
MODERATION_CODES = frozenset({"DataInspectionFailed", "IPInfringementSuspect"})


def _error_of(body: Any) -> tuple[str, str]:
    """(code, message) of an error body, or of a failed task's ``output``."""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("code") or "")[:80], str(body.get("message") or "")[:300]


def _moderated(code: str, message: str) -> bool:
    # "Input data may contain inappropriate content." / "Output data may …"; not
    # InvalidParameter.DataInspection, which is a download that timed out during the check.
    return code in MODERATION_CODES or "inappropriate content" in message.lower()


def _moderation(code: str, message: str) -> str:
    if code == "IPInfringementSuspect":
        what = "上游判定内容涉嫌侵犯知识产权"
    elif message.lower().startswith("output"):
        what = "上游判定生成的图片含不当内容"
    else:
        what = "上游判定提示词或参考图含不当内容"
    return f"内容审核未通过:{what}({code or 'DataInspectionFailed'})"


def _refusal(status: int, headers: Any, body: Any) -> UpstreamError | None:
    """What an answer's status and error body mean; None for a success."""
    code, message = _error_of(body)
    if status == 403 and code == "AccessDenied" and "synchronous" in message:
        # Our own request was wrong (no X-DashScope-Async), not the key: every key would
        # be refused the same, so none is disabled for it.
        return UpstreamError(
            "渠道协议错误:上游只接受异步任务,请求缺少 X-DashScope-Async 头",
            transient=False,
            http_status=status,
        )
    if code == "Arrearage":
        return UpstreamError(
            "上游账户已欠费(Arrearage),请充值后重新启用该密钥",
            transient=False,
            key_rejected=True,
            http_status=status,
        )
    failure = status_error(status, headers, also_transient=(404,))
    if failure is not None:
        return failure
    if status < 400:
        return None
    if _moderated(code, message):
        return UpstreamError(_moderation(code, message), transient=False, http_status=status)
    said = f"{code}: {message}" if code and message else code or message or f"HTTP {status}"
    return UpstreamError(f"上游拒绝任务: {said}", transient=False, http_status=status)


class DashScopeProvider(HttpUpstream):
    name = "dashscope"

    async def _json(
        self,
        method: str,
        path: str,
        *,
        task_no: str,
        creates: bool = False,
        refused_ok: bool = False,
        **kwargs: Any,
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON object) of the answer. ``creates``: a 2xx we cannot read may hide a
        task made and paid for, so it is uncertain (not sent again). ``refused_ok``: a 400
        is returned to the caller to read, not raised."""
        sent = kwargs.get("json")
        answer = await self._send(
            method,
            path,
            task_no=task_no,
            logged={"body": digest(sent)} if sent is not None else None,
            **kwargs,
        )
        body = answer.json_or_none()
        if not (refused_ok and answer.status == 400):
            failure = _refusal(answer.status, answer.headers, body)
            if failure is not None:
                raise failure
        if not isinstance(body, dict):
            raise UpstreamError(
                "上游返回了无法解析的内容",
                transient=not creates,
                uncertain=creates,
                http_status=answer.status,
            )
        return answer.status, body

    async def submit(self, job: UpstreamJob) -> UpstreamState:
        params = dict(job.params)
        image_field = str(params.pop(IMAGE_FIELD, "base_image_url"))
        model_input: dict[str, Any] = {"prompt": job.prompt}
        for field in INPUT_FIELDS & params.keys():
            model_input[field] = params.pop(field)
        path = TEXT_TO_IMAGE
        if job.image_urls:
            path = IMAGE_TO_IMAGE
            if image_field == "images":
                model_input["images"] = list(job.image_urls)
            else:
                model_input[image_field] = job.image_urls[0]
            if image_field == "base_image_url":
                model_input.setdefault("function", DEFAULT_FUNCTION)
        parameters = {**params, "n": job.count}
        _, body = await self._json(
            "POST",
            path,
            task_no=job.task_no,
            creates=True,
            headers=ASYNC,
            json={"model": job.upstream_model, "input": model_input, "parameters": parameters},
        )
        output = body.get("output")
        task_id = output.get("task_id") if isinstance(output, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise UpstreamError("上游接受了任务但未返回任务编号", transient=True, uncertain=True)
        return _state(task_id, body)

    async def poll(self, upstream_id: str, task_no: str = "") -> UpstreamState:
        _, body = await self._json("GET", f"{TASKS}/{quote(upstream_id, safe='')}", task_no=task_no)
        return _state(upstream_id, body)

    async def cancel(self, upstream_id: str, task_no: str = "") -> UpstreamState:
        """The task as the cancel left it: ``CANCELED`` when it was still queued; else (it
        runs, or is done) as a poll finds it."""
        status, body = await self._json(
            "POST",
            f"{TASKS}/{quote(upstream_id, safe='')}/cancel",
            task_no=task_no,
            refused_ok=True,
        )
        if status != 400:
            return UpstreamState(upstream_id, "failed", "CANCELED", error="上游任务已取消")
        if _error_of(body)[0] != "UnsupportedOperation":
            failure = _refusal(status, {}, body)
            assert failure is not None  # every 400 is one
            raise failure
        return await self.poll(upstream_id, task_no)

    async def check(self) -> None:
        # A task that does not exist answers UNKNOWN with 200: free, and it proves the key.
        await self._json("GET", f"{TASKS}/shengtu-check-{secrets.token_hex(4)}", task_no="")


def _state(upstream_id: str, body: dict[str, Any]) -> UpstreamState:
    """The task in ``body`` (a create's or a poll's answer) as our phases."""
    output = body.get("output")
    if not isinstance(output, dict):
        raise UpstreamError("上游返回了无法解析的内容", transient=True)
    status = str(output.get("task_status") or "")
    phase = PHASES.get(status)
    if phase is None:
        raise UpstreamError(f"上游返回未知状态: {status[:40]}", transient=True)
    usage = body.get("usage")
    usage = dict(usage) if isinstance(usage, dict) and usage else None
    if status == "SUCCEEDED":
        results = [r for r in output.get("results") or [] if isinstance(r, dict)]
        urls = tuple(r["url"] for r in results if isinstance(r.get("url"), str) and r["url"])
        if urls:
            return UpstreamState(upstream_id, "succeeded", status, 100, urls, usage=usage)
        failed = [_error_of(r) for r in results if r.get("code")]
        if not failed:
            raise UpstreamError("上游报告成功但没有返回图片地址", transient=True)
        return UpstreamState(upstream_id, "failed", status, error=_failure(*failed[0]), usage=usage)
    if status == "FAILED":
        reason = _failure(*_error_of(output))
        return UpstreamState(upstream_id, "failed", status, error=reason, usage=usage)
    if status == "CANCELED":
        return UpstreamState(upstream_id, "failed", status, error="上游任务已取消", usage=usage)
    if status == "UNKNOWN":
        return UpstreamState(
            upstream_id, "failed", status, error="上游查无此任务(不存在或已超过 24 小时查询期)"
        )
    return UpstreamState(upstream_id, phase, status, usage=usage)  # type: ignore[arg-type]


def _failure(code: str, message: str) -> str:
    if _moderated(code, message):
        return _moderation(code, message)
    said = f"{code}: {message}" if code and message else code or message or "上游未说明原因"
    return f"图片生成失败:{said}"
