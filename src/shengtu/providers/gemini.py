"""Gemini image models (gemini-2.5-flash-image, "Nano Banana"; gemini-3-pro-image-preview)
through the Gemini API.

``POST /v1beta/models/{model}:generateContent``, the key in ``x-goog-api-key``. The prompt
and the reference pictures (inline, base64: the worker fetched them) go as one user turn;
``generationConfig`` asks for a picture (``responseModalities``) and its ``imageConfig``
(``aspectRatio``, and ``imageSize`` for the models that have sizes) comes from the job's
params. The answer comes when the picture is done, inline
(``candidates[].content.parts[].inlineData``, base64), with the tokens it took
(``usageMetadata``, what Google bills): nothing to poll, nothing to download.

One call makes one picture (the image models refuse ``candidateCount`` above one): a job
of several gets one, and the worker refunds the rest.

A safety block is a 200 without a picture: ``promptFeedback.blockReason`` (the prompt
refused) or a candidate's ``finishReason`` (``IMAGE_SAFETY``, ``PROHIBITED_CONTENT`` …:
what was drawn refused). Errors are Google's ``{"error": {code, message, status,
details}}``; a wrong key is a 400 whose ``ErrorInfo`` reason is ``API_KEY_INVALID``.

Every answer we give a meaning to is mapped in this file.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.http import HttpUpstream, status_error

# A 4K picture inline in base64 is tens of MB.
MAX_ANSWER_BYTES = 96 * 1024 * 1024
# The job's params that are the picture's own settings (``imageConfig``), in either spelling
# the API reads; every other param is a ``generationConfig`` field, except these few that
# sit beside it in the request.
IMAGE_CONFIG = {
    "aspectRatio": "aspectRatio",
    "aspect_ratio": "aspectRatio",
    "imageSize": "imageSize",
    "image_size": "imageSize",
}
REQUEST_FIELDS = ("safetySettings", "systemInstruction")
# Text beside the picture: the model says why when it draws nothing (its own refusal).
DEFAULT_MODALITIES = ["TEXT", "IMAGE"]
# Why a prompt or a candidate was blocked, as the user is told. A finish reason not here
# with no picture is a failure of its own (上游没有返回图片), not a moderation.
BLOCK_REASONS = {
    "SAFETY": "提示词触发了上游的安全策略",
    "PROHIBITED_CONTENT": "提示词属于上游禁止生成的内容",
    "BLOCKLIST": "提示词含有上游屏蔽的词语",
    "IMAGE_SAFETY": "提示词含有不适合生成图片的内容",
    "OTHER": "提示词被上游拦截(上游未说明原因)",
}
FINISH_BLOCKS = {
    "SAFETY": "生成内容触发了上游的安全策略",
    "IMAGE_SAFETY": "生成的图片触发了上游的安全策略",
    "PROHIBITED_CONTENT": "生成内容属于上游禁止的内容",
    "IMAGE_PROHIBITED_CONTENT": "生成的图片属于上游禁止的内容",
    "BLOCKLIST": "生成内容含有上游屏蔽的词语",
    "SPII": "生成内容含有敏感个人信息",
    "RECITATION": "生成内容可能复现受版权保护的作品",
    "IMAGE_RECITATION": "生成的图片可能复现受版权保护的作品",
}
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)s$")


def _google_error(body: Any) -> tuple[str, str, list[str], float | None]:
    """(status, message, the ErrorInfo reasons, RetryInfo's delay in seconds) of a Google
    error body; empty when it is not one."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", "", [], None
    reasons: list[str] = []
    delay: float | None = None
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if isinstance(detail.get("reason"), str):
            reasons.append(detail["reason"])
        match = _DURATION.match(str(detail.get("retryDelay") or ""))
        if match:
            delay = min(float(match.group(1)), 300.0)
    return (
        str(error.get("status") or "")[:40],
        str(error.get("message") or "")[:300],
        reasons,
        delay,
    )


def _refusal(status: int, body: Any, headers: Mapping[str, str]) -> UpstreamError | None:
    """The UpstreamError of an answer that is not a success, or None for a 2xx."""
    code, message, reasons, delay = _google_error(body)
    said = f"({message})" if message else ""
    if any(r.startswith("API_KEY_") for r in reasons) or code in (
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
    ):
        return UpstreamError(
            f"上游鉴权失败,请检查上游密钥配置{said}",
            transient=False,
            key_rejected=True,
            http_status=status,
        )
    if code == "FAILED_PRECONDITION":
        # The account cannot use the API as it is (no billing where the free tier is not
        # offered, an unsupported region): every task through this key would be refused.
        return UpstreamError(
            f"上游账户不可用{said}", transient=False, key_rejected=True, http_status=status
        )
    if status == 404:
        # No such model, or not one this key may use: no picture made, next channel.
        return UpstreamError(
            f"上游没有该模型或该模型不能生成图片(HTTP 404){said}", transient=True, http_status=404
        )
    failure = status_error(status, headers)
    if failure is not None:
        if status == 429 and delay is not None:
            # Google says how long in the body (RetryInfo), not in a Retry-After header.
            failure.retry_after = delay
        return failure
    if status >= 400:
        return UpstreamError(
            f"上游拒绝任务: {message or f'HTTP {status}'}", transient=False, http_status=status
        )
    return None


class GeminiProvider(HttpUpstream):
    name = "gemini"
    # Reference pictures go inline (base64), not as URLs: the worker fetches them.
    wants_image_bytes = True
    polls = False
    max_answer_bytes = MAX_ANSWER_BYTES

    def key_headers(self) -> dict[str, str]:
        # The key goes in Google's own header: an Authorization header would be read as an
        # OAuth token, and refused.
        return {"x-goog-api-key": self._key}

    async def _call(
        self, method: str, path: str, *, task_no: str, **kwargs: Any
    ) -> tuple[int, Any]:
        """(HTTP status, parsed JSON body) of a success; an UpstreamError otherwise."""
        answer = await self._send(method, path, task_no=task_no, **kwargs)
        body = answer.json_or_none()
        failure = _refusal(answer.status, body, answer.headers)
        if failure is not None:
            raise failure
        if body is None:
            # A 2xx we cannot read: a picture may have been made and paid for. Sending the
            # task again would pay for another: the channel's policy decides.
            raise UpstreamError(
                "上游返回了无法解析的内容",
                transient=False,
                uncertain=True,
                http_status=answer.status,
            )
        return answer.status, body

    async def submit(self, job: UpstreamJob) -> UpstreamState:
        model = job.upstream_model.removeprefix("models/")
        _, body = await self._call(
            "POST",
            f"/v1beta/models/{quote(model, safe='')}:generateContent",
            task_no=job.task_no,
            logged={"model": model, "references": len(job.images)},
            json=request_body(job),
        )
        return answer_state(body)

    async def poll(self, upstream_id: str, task_no: str = "") -> UpstreamState:
        # Never reached: a submit here ends its task. A task found in this state was
        # left by a worker that died between the answer and its write: the picture is gone.
        raise UpstreamError("该上游协议没有可查询的任务,结果已丢失", transient=False)

    async def check(self) -> None:
        status, body = await self._call(
            "GET", "/v1beta/models", task_no="", params={"pageSize": "1"}
        )
        if not isinstance(body, dict):
            raise UpstreamError("上游返回了无法解析的内容", transient=True, http_status=status)


def request_body(job: UpstreamJob) -> dict[str, Any]:
    """The generateContent request of a job: its prompt and references as one user turn,
    and its params as the picture's settings."""
    parts: list[dict[str, Any]] = [{"text": job.prompt}]
    for data, content_type in job.images:
        parts.append(
            {"inline_data": {"mime_type": content_type, "data": base64.b64encode(data).decode()}}
        )
    image_config: dict[str, Any] = {}
    config: dict[str, Any] = {"responseModalities": list(DEFAULT_MODALITIES)}
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
    for key, value in job.params.items():
        if key in IMAGE_CONFIG:
            image_config[IMAGE_CONFIG[key]] = value
        elif key in REQUEST_FIELDS:
            body[key] = value
        elif key not in ("model", "prompt", "n", "candidateCount"):
            config[key] = value
    if image_config:
        config["imageConfig"] = {**config.get("imageConfig", {}), **image_config}
    body["generationConfig"] = config
    return body


def answer_state(body: Any) -> UpstreamState:
    """The pictures of a generateContent answer (its thoughts' drafts left out), or the
    UpstreamError of an answer without one."""
    if not isinstance(body, dict):
        raise UpstreamError("上游返回了无法解析的内容", transient=False, uncertain=True)
    feedback = body.get("promptFeedback")
    blocked = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if blocked:
        why = BLOCK_REASONS.get(str(blocked), "提示词被上游拦截")
        raise UpstreamError(
            f"内容审核未通过:{why}(blockReason={str(blocked)[:40]})", transient=False
        )
    pictures: list[bytes] = []
    texts: list[str] = []
    reasons: list[str] = []
    undecodable: Exception | None = None
    candidates = body.get("candidates")
    for candidate in candidates if isinstance(candidates, list) else []:
        if not isinstance(candidate, dict):
            continue
        if candidate.get("finishReason"):
            reasons.append(str(candidate["finishReason"])[:40])
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            # A thinking model's drafts (``thought``) are not the picture.
            if not isinstance(part, dict) or part.get("thought"):
                continue
            inline = part.get("inlineData") or part.get("inline_data")
            if isinstance(inline, dict):
                mime = str(inline.get("mimeType") or inline.get("mime_type") or "")
                if not mime.startswith("image/"):
                    continue
                try:
                    pictures.append(base64.b64decode(str(inline.get("data") or ""), validate=True))
                except (binascii.Error, ValueError) as exc:
                    undecodable = exc
            elif isinstance(part.get("text"), str):
                texts.append(part["text"])
    reason = reasons[0] if reasons else ""
    if not pictures:
        if undecodable is not None:
            raise UpstreamError(
                "上游返回的图片数据无法解码", transient=False, uncertain=True
            ) from undecodable
        blocked_as = next((r for r in reasons if r in FINISH_BLOCKS), None)
        if blocked_as is not None:
            raise UpstreamError(
                f"内容审核未通过:{FINISH_BLOCKS[blocked_as]}(finishReason={blocked_as})",
                transient=False,
            )
        said = " ".join(texts).strip()
        raise UpstreamError(
            f"上游没有返回图片(finishReason={reason or '无'})" + (f":{said[:200]}" if said else ""),
            transient=False,
        )
    usage = body.get("usageMetadata")
    upstream_id = body.get("responseId")
    return UpstreamState(
        str(upstream_id)[:120]
        if isinstance(upstream_id, str) and upstream_id
        else "gem-" + secrets.token_hex(8),
        "succeeded",
        reason or "STOP",
        100,
        pictures=tuple(pictures),
        usage=dict(usage) if isinstance(usage, dict) else None,
    )
