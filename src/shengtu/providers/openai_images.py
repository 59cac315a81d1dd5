"""OpenAI Images API upstreams: OpenAI itself, and every new-api/one-api style relay.

``POST /v1/images/generations`` (JSON) and ``POST /v1/images/edits`` (multipart, with the
reference pictures, which the worker fetched through the SSRF guard) answer when the
pictures are done (``n`` of them, the job's count), each inline (``b64_json``) or as a URL,
with the tokens they took (``usage``, gpt-image's). So a submit here either ends the task
or fails: there is nothing to poll. A call may take minutes; the worker keeps
the task's lease alive meanwhile, and other tasks go on beside it.

Every answer we give a meaning to is mapped in this file.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

import aiohttp

from shengtu.providers.base import MODERATED, UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.http import HttpUpstream, status_error

# A picture inline in base64: a 4096² PNG is tens of MB.
MAX_ANSWER_BYTES = 96 * 1024 * 1024
# OpenAI's error codes that refuse the content of the task, not the key or the service.
CONTENT_REFUSALS = {"content_policy_violation", "moderation_blocked", "safety_violation"}
KEY_REFUSALS = {"invalid_api_key", "insufficient_quota", "billing_hard_limit_reached"}


def _error_of(body: Any) -> tuple[str, str]:
    """(code, message) of an OpenAI error body, or empty strings."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code = error.get("code") or error.get("type") or ""
    return str(code)[:80], str(error.get("message") or "")[:400]


class OpenAIImagesProvider(HttpUpstream):
    name = "openai_images"
    # Reference pictures go upstream as files, not URLs: the worker fetches them.
    wants_image_bytes = True
    polls = False
    max_answer_bytes = MAX_ANSWER_BYTES

    async def _call(
        self, method: str, path: str, *, task_no: str, **kwargs: Any
    ) -> tuple[int, Any]:
        """(HTTP status, parsed JSON body); an UpstreamError for every other outcome."""
        answer = await self._send(method, path, task_no=task_no, **kwargs)
        status = answer.status
        body = answer.json_or_none()
        code, message = _error_of(body)
        if code in KEY_REFUSALS:
            reason = (
                "上游账户余额不足"
                if code in ("insufficient_quota", "billing_hard_limit_reached")
                else "上游鉴权失败,请检查上游密钥配置"
            )
            raise UpstreamError(reason, transient=False, key_rejected=True, http_status=status)
        # 404: a model this upstream does not have; certainly no picture made.
        failure = status_error(status, answer.headers, also_transient=(404,))
        if failure is not None:
            raise failure
        if status >= 400:
            said = message or f"HTTP {status}"
            # A refusal of the content reads as every protocol's does (is_moderation).
            reason = (
                f"{MODERATED}:内容不符合上游的使用政策({said})"
                if code in CONTENT_REFUSALS
                else f"上游拒绝任务: {said}"
            )
            raise UpstreamError(reason, transient=False, http_status=status)
        if body is None:
            # A 2xx whose body we cannot read: a picture was made and paid for, and is
            # lost. Sending it again would pay for another: not retried.
            raise UpstreamError(
                "上游返回了无法解析的内容", transient=False, uncertain=True, http_status=status
            )
        return status, body

    async def submit(self, job: UpstreamJob) -> UpstreamState:
        params = {k: v for k, v in job.params.items() if k not in ("model", "prompt", "n")}
        if job.images:
            form = aiohttp.FormData()
            form.add_field("model", job.upstream_model)
            form.add_field("prompt", job.prompt)
            form.add_field("n", str(job.count))
            for key, value in params.items():
                form.add_field(key, str(value))
            for index, (data, content_type) in enumerate(job.images):
                extension = content_type.rsplit("/", 1)[-1]
                form.add_field(
                    "image[]" if len(job.images) > 1 else "image",
                    data,
                    filename=f"ref{index}.{extension}",
                    content_type=content_type,
                )
            _, body = await self._call("POST", "/v1/images/edits", task_no=job.task_no, data=form)
        else:
            payload = {"model": job.upstream_model, "prompt": job.prompt, "n": job.count, **params}
            _, body = await self._call(
                "POST", "/v1/images/generations", task_no=job.task_no, json=payload
            )
        return _pictures(body)

    async def poll(self, upstream_id: str, task_no: str = "") -> UpstreamState:
        # Never reached: a submit here ends its task. A task found in this state was
        # left by a worker that died between the answer and its write: the picture is gone.
        raise UpstreamError("该上游协议没有可查询的任务,结果已丢失", transient=False)

    async def check(self) -> None:
        status, body = await self._call("GET", "/v1/models", task_no="")
        if not isinstance(body, dict):
            raise UpstreamError("上游返回了无法解析的内容", transient=True, http_status=status)


def _pictures(body: Any) -> UpstreamState:
    """Every picture of an answer's ``data``, inline or as a URL (an item that is neither
    is skipped), and its ``usage`` when it has one."""
    data = body.get("data") if isinstance(body, dict) else None
    pictures: list[bytes] = []
    urls: list[str] = []
    undecodable: Exception | None = None
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("b64_json"), str):
            try:
                pictures.append(base64.b64decode(item["b64_json"], validate=True))
            except (binascii.Error, ValueError) as exc:
                undecodable = exc
        elif isinstance(item.get("url"), str) and item["url"]:
            urls.append(item["url"])
    if not pictures and not urls:
        if undecodable is not None:
            raise UpstreamError(
                "上游返回的图片数据无法解码", transient=False, uncertain=True
            ) from undecodable
        raise UpstreamError("上游回答中没有图片", transient=False, uncertain=True)
    usage = body.get("usage")
    return UpstreamState(
        "oai-" + secrets.token_hex(8),
        "succeeded",
        "completed",
        100,
        tuple(urls),
        pictures=tuple(pictures),
        usage=dict(usage) if isinstance(usage, dict) else None,
    )
