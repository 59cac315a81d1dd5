"""Volcengine Ark (火山方舟) image generation: Seedream 3.0/4.0/4.5.

``POST /api/v3/images/generations`` with ``Authorization: Bearer <Ark API key>`` and a JSON
body: ``model`` (the channel model's ``upstreamModel``: a model id such as
``doubao-seedream-4-0-250828``, or an endpoint id ``ep-…``), ``prompt``, the reference
pictures as ``image`` (one URL, or a list of them), ``stream: false``, and the channel
model's ``upstreamParams`` and the task's chosen values (``size``: ``1K``/``2K``/``4K`` or
``2048x2048``; ``response_format``, ``watermark``, ``seed`` …). A task of several pictures
asks for a set: ``sequential_image_generation: "auto"`` with
``sequential_image_generation_options.max_images`` = its count. The model decides how many
it makes, at most that: fewer is a partial result, and the worker refunds the rest.

It answers when the pictures are done (minutes for a 4K set): ``{model, created, data,
usage}``, each ``data`` item a picture (``url``, valid 24 hours: the worker copies it at
once; or ``b64_json``, stored as it is) or, in a set, a picture that failed on its own
(``{"error": {code, message}}``: moderated, or an internal error that stopped the set).
``usage`` (``generated_images``, ``output_tokens``, ``total_tokens``: what Ark bills) is
recorded on the task. There is no job id and nothing to poll.

Errors are ``{"error": {code, message, param, type}}``. Every code we give a meaning to is
in this file: the content refusals (``…SensitiveContentDetected``) fail the task as a
moderation; the account's (overdue, a spending limit it set) and 401/403 disable the key;
a model or endpoint the account lacks (404) and 429/5xx made no picture: the next channel.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from typing import Any

from shengtu.logs import get_logger
from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.http import HttpUpstream, status_error

log = get_logger("shengtu.upstream")

NAME = "volcengine_ark"
PATH = "/api/v3/images/generations"
# A set of 4K pictures inline in base64: each a few MB.
MAX_ANSWER_BYTES = 96 * 1024 * 1024
# Fields the protocol itself fills: a channel's parameters never override them.
OWN_FIELDS = frozenset({"model", "prompt", "image", "stream", "n"})
MODERATED = {
    "InputTextSensitiveContentDetected": "上游判定提示词含敏感内容",
    "InputImageSensitiveContentDetected": "上游判定参考图含敏感内容",
    "OutputImageSensitiveContentDetected": "上游判定生成的图片含敏感内容",
    "OutputTextSensitiveContentDetected": "上游判定生成内容含敏感信息",
}
# Refusals of the account behind the key, whatever their status: no task can use it until
# the operator acts (a recharge, a limit raised in the console).
ACCOUNT_REFUSALS = {
    "AccountOverdueError": "上游账户已欠费,请充值后启用",
    "OperationDenied.ServiceOverdue": "上游账单已逾期,请充值后启用",
    "InvalidAccountStatus": "上游账户状态异常",
    "SetLimitExceeded": "已达到上游账户自设的推理限额(安心体验模式),请在方舟控制台调整",
}
# The model or endpoint is not there for this account: certainly nothing made, and another
# channel may have it.
MODEL_UNAVAILABLE = {
    "InvalidEndpointOrModel.NotFound": "上游模型或接入点不存在或无权访问",
    "InvalidEndpointOrModel.ModelIDAccessDisabled": "上游账户不允许直接用模型 ID 调用",
    "InvalidEndpoint.ClosedEndpoint": "上游接入点已关闭",
    "ModelNotOpen": "上游账户未开通该模型",
    "OperationDenied.ServiceNotOpen": "上游账户未开通该模型服务",
}
# A picture of a set that failed on its own for one of these may well be made next time.
PASSING_PICTURE_ERRORS = {"InternalServiceError", "ServerOverloaded"}


def error_of(body: Any) -> tuple[str, str]:
    """(code, message) of an Ark error object or a body carrying one, or empty strings."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or "")[:80], str(error.get("message") or "")[:300]


def moderation(code: str) -> str | None:
    """What a content refusal says, or None when ``code`` is not one."""
    if code in MODERATED:
        return MODERATED[code]
    if "SensitiveContentDetected" in code or "RiskDetection" in code:
        return f"上游判定内容含敏感信息({code})"
    return None


def failure(
    status: int, headers: Mapping[str, str], code: str, message: str
) -> UpstreamError | None:
    """The UpstreamError of an Ark error answer (None: a 2xx without an error code)."""
    detail = f"({code})" if code else ""
    refused = moderation(code)
    if refused is not None:
        return UpstreamError(f"内容审核未通过:{refused}", transient=False, http_status=status)
    if code in ACCOUNT_REFUSALS:
        return UpstreamError(
            ACCOUNT_REFUSALS[code], transient=False, key_rejected=True, http_status=status
        )
    if code in MODEL_UNAVAILABLE or status == 404:
        reason = MODEL_UNAVAILABLE.get(code, "上游接口或模型不存在")
        return UpstreamError(
            f"{reason}{detail or f'(HTTP {status})'}", transient=True, http_status=status
        )
    common = status_error(status, headers)
    if common is not None:
        return UpstreamError(
            common.message + detail,
            transient=common.transient,
            retry_after=common.retry_after,
            key_rejected=common.key_rejected,
            http_status=status,
        )
    if status >= 400 or code:
        return UpstreamError(
            f"上游拒绝任务{detail}: {message or f'HTTP {status}'}",
            transient=False,
            http_status=status,
        )
    return None


def _set_failed(failures: list[tuple[str, str]]) -> UpstreamError:
    """Every picture of the answer failed on its own: why, as the first of them says."""
    code, message = failures[0]
    if all(moderation(c) is not None for c, _ in failures):
        return UpstreamError(f"内容审核未通过:{moderation(code)}", transient=False)
    return UpstreamError(
        f"上游未能生成图片({code or '未说明'}): {message or '上游未说明原因'}",
        transient=any(c in PASSING_PICTURE_ERRORS for c, _ in failures),
    )


def read_answer(status: int, headers: Mapping[str, str], body: Any, count: int) -> UpstreamState:
    """The state of a generation answer: its pictures (at most ``count``) and usage, or
    the UpstreamError it means."""
    code, message = error_of(body)
    data = body.get("data") if isinstance(body, dict) else None
    if status >= 400 or (code and not data):
        refused = failure(status, headers, code, message)
        assert refused is not None
        raise refused
    if not isinstance(body, dict):
        # A 2xx we cannot read: the pictures were made and paid for, and are lost. Sending
        # the task again would pay for them twice: uncertain, never resent blindly.
        raise UpstreamError(
            "上游返回了无法解析的内容", transient=False, uncertain=True, http_status=status
        )
    pictures: list[bytes] = []
    urls: list[str] = []
    failures: list[tuple[str, str]] = []
    undecodable: Exception | None = None
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("error"), dict):
            failures.append(error_of(item))
        elif isinstance(item.get("b64_json"), str) and item["b64_json"]:
            try:
                pictures.append(base64.b64decode(item["b64_json"], validate=True))
            except (binascii.Error, ValueError) as exc:
                undecodable = exc
        elif isinstance(item.get("url"), str) and item["url"]:
            urls.append(item["url"])
    usage = body.get("usage")
    usage = dict(usage) if isinstance(usage, dict) else None
    made = len(pictures) + len(urls)
    if not made:
        if failures:
            raise _set_failed(failures)
        # Billed pictures we cannot use (the usage says they were made) are lost for good.
        billed = usage is None or bool(usage.get("generated_images"))
        if undecodable is not None:
            raise UpstreamError(
                "上游返回的图片数据无法解码", transient=False, uncertain=billed
            ) from undecodable
        raise UpstreamError("上游回答中没有图片", transient=False, uncertain=billed)
    if failures:
        log.info(
            "upstream_pictures_failed",
            protocol=NAME,
            codes=[c for c, _ in failures][:15],
            delivered=made,
        )
    request_id = str(headers.get("x-request-id") or "")[:100]
    return UpstreamState(
        "ark-" + (request_id or secrets.token_hex(8)),
        "succeeded",
        "succeeded" if made >= count and not failures else "partial",
        100,
        tuple(urls[:count]),
        pictures=tuple(pictures[:count]),
        usage=usage,
    )


def payload(job: UpstreamJob) -> dict[str, Any]:
    """The JSON body of ``job``'s generation request."""
    body: dict[str, Any] = {
        "model": job.upstream_model,
        "prompt": job.prompt,
        **{k: v for k, v in job.params.items() if k not in OWN_FIELDS},
    }
    if job.image_urls:
        body["image"] = job.image_urls[0] if len(job.image_urls) == 1 else list(job.image_urls)
    if job.count > 1:
        # A set: the model decides how many it makes, at most this many.
        body["sequential_image_generation"] = "auto"
        body["sequential_image_generation_options"] = {"max_images": job.count}
    elif "sequential_image_generation" in body:
        # A channel's "auto" must not make several pictures of a one-picture task (paid
        # for, and thrown away). Not sent otherwise: Seedream 3.0 has no such field.
        body["sequential_image_generation"] = "disabled"
        body.pop("sequential_image_generation_options", None)
    body["stream"] = False
    return body


class VolcengineArkProvider(HttpUpstream):
    name = NAME
    polls = False
    max_answer_bytes = MAX_ANSWER_BYTES

    async def submit(self, job: UpstreamJob) -> UpstreamState:
        answer = await self._send(
            "POST",
            PATH,
            task_no=job.task_no,
            logged={"pictures": job.count, "references": len(job.image_urls)},
            json=payload(job),
        )
        return read_answer(answer.status, answer.headers, answer.json_or_none(), job.count)

    async def poll(self, upstream_id: str, task_no: str = "") -> UpstreamState:
        # Never reached: a submit here ends its task. A task found in this state was left
        # by a worker that died between the answer and its write: the pictures are gone.
        raise UpstreamError("该上游协议没有可查询的任务,结果已丢失", transient=False)

    async def check(self) -> None:
        """An empty request: Ark checks the key first (401/403), then finds the model and
        prompt missing (400 ``MissingParameter``): the key and address proven, nothing made."""
        answer = await self._send("POST", PATH, task_no="", json={})
        code, message = error_of(answer.json_or_none())
        if answer.status == 400 and code and moderation(code) is None:
            return
        refused = failure(answer.status, answer.headers, code, message)
        raise refused or UpstreamError(
            f"上游地址未按方舟协议回答(HTTP {answer.status})",
            transient=True,
            http_status=answer.status,
        )
