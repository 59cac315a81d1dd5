"""可灵 (Kling AI) image generation: create and poll. Every answer we give a meaning to is here.

- auth: each request carries ``Authorization: Bearer <JWT>``, a token we mint from the
  channel's key, ``ACCESS_KEY:SECRET_KEY`` (the two halves Kling's console hands out, joined
  by a colon): HS256, header ``{"alg": "HS256", "typ": "JWT"}``, payload ``{"iss": access
  key, "exp": now + 30 min, "nbf": now - 5 s}``, signed with the secret key. One token
  serves every call until it has less than ``token_renew_before`` seconds left; then a new
  one is minted. A 401 with code 1004 (token expired) mints a new one and sends the call once
  more (a 401 made no job). A key without both halves is refused before anything is sent.
- create: ``POST /v1/images/generations`` ``{model_name, prompt, n, aspect_ratio?, image?,
  image_reference?, image_fidelity?, human_fidelity?, negative_prompt?, resolution?}``: the
  channel model's ``upstreamModel`` is ``model_name`` (``kling-v1``, ``kling-v1-5``,
  ``kling-v2`` …) and its ``upstreamParams`` and chosen values go alongside (e.g.
  ``{"aspect_ratio": "16:9", "image_reference": "subject"}``). A reference picture goes as
  its URL in ``image`` (one: this endpoint takes one); the reference fields go only with
  it, and ``negative_prompt`` only without it (Kling refuses it beside a reference).
  Answer: ``{code: 0, message, request_id, data: {task_id, task_status: "submitted", …}}``.
- poll: ``GET /v1/images/generations/{task_id}``: ``data.task_status`` ``submitted``
  (queued), ``processing``, ``succeed`` (``data.task_result.images[]``: ``{index, url}``,
  possibly fewer than ``n``; kept 30 days upstream, copied at once anyway), ``failed``
  (``data.task_status_msg``; "Failure to pass the risk control system" is a moderation
  refusal). ``final_unit_deduction``, the units Kling charged, is recorded as the usage.
- check: ``GET /v1/images/generations?pageNum=1&pageSize=1``, the task list: free.
- errors: ``{code, message, request_id}`` with the HTTP status of the code (see ``CODES``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import jwt

from shengtu.logs import digest
from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamPhase, UpstreamState
from shengtu.providers.http import Answer, HttpUpstream, status_error
from shengtu.providers.pacing import Pacer

PHASES: dict[str, UpstreamPhase] = {
    "submitted": "queued",
    "processing": "processing",
    "succeed": "succeeded",
    "failed": "failed",
}
TOKEN_EXPIRED = 1004
# Kling's own words for a refusal of the content (its risk control), and the usual others.
CONTENT_WORDS = (
    "risk control",
    "content security",
    "sensitive",
    "violat",
    "policy",
    "风控",
    "安全",
    "敏感",
    "违规",
    "审核",
)
# The fields that describe a reference picture: sent only beside one.
REFERENCE_FIELDS = ("image_reference", "image_fidelity", "human_fidelity")
KEY_FORMAT = "可灵密钥格式错误:应为 AccessKey:SecretKey(两部分以英文冒号分隔,都不能为空)"
# Kling asks for a back-off of at least a second after 1302/1303, and sends no Retry-After.
THROTTLED_WAIT = 1.0


@dataclass(frozen=True)
class Code:
    """What one of Kling's business codes means to us."""

    # A refusal of the content starts "内容审核未通过:", so that it counts apart.
    reason: str
    transient: bool = False
    key_rejected: bool = False


CODES: dict[int, Code] = {
    1000: Code("上游鉴权失败,请检查可灵的 AccessKey 与 SecretKey", key_rejected=True),
    1001: Code("上游鉴权失败:Authorization 为空", key_rejected=True),
    1002: Code("上游鉴权失败:令牌格式非法,请检查可灵的 AccessKey 与 SecretKey", key_rejected=True),
    # Our clock is ahead of Kling's: not the key's fault, and nothing was made.
    1003: Code("上游认为令牌尚未生效,请检查本机时钟", transient=True),
    1004: Code("上游认为令牌已过期,请检查本机时钟", transient=True),
    1100: Code("上游账户异常", key_rejected=True),
    1101: Code("上游账户欠费", key_rejected=True),
    1102: Code("上游资源包已用完或已过期", key_rejected=True),
    # A model or endpoint this account may not use: another channel may.
    1103: Code("上游账户无权使用该接口或模型", transient=True),
    1200: Code("上游拒绝任务:请求参数非法"),
    1201: Code("上游拒绝任务:参数值非法"),
    # A wrong base URL or a model this upstream does not have: certainly no job made.
    1202: Code("上游不支持该请求方法", transient=True),
    1203: Code("上游找不到请求的资源(模型或任务)", transient=True),
    1300: Code("内容审核未通过:上游判定触发平台策略"),
    1301: Code("内容审核未通过:上游判定内容不符合内容安全策略"),
    1302: Code("上游限流(请求过快)", transient=True),
    1303: Code("上游并发已满(超出资源包限制)", transient=True),
    1304: Code("上游 IP 白名单策略拒绝了本机地址", key_rejected=True),
    5000: Code("上游服务内部错误", transient=True),
    5001: Code("上游服务暂不可用", transient=True),
    5002: Code("上游服务内部超时", transient=True),
}


def split_key(key: str) -> tuple[str, str] | None:
    """(access key, secret key) of a channel key ``ACCESS:SECRET``, or None when a half is
    missing."""
    access, colon, secret = key.partition(":")
    access, secret = access.strip(), secret.strip()
    return (access, secret) if colon and access and secret else None


def mint_token(access_key: str, secret_key: str, lifetime: float, now: float) -> str:
    """A token as Kling's docs make it, valid ``lifetime`` seconds from ``now``."""
    payload = {"iss": access_key, "exp": int(now + lifetime), "nbf": int(now) - 5}
    with warnings.catch_warnings():
        # PyJWT warns about an HMAC secret under 32 bytes; the secret is Kling's to choose.
        warnings.filterwarnings("ignore", message="The HMAC key is")
        return jwt.encode(payload, secret_key, algorithm="HS256", headers={"typ": "JWT"})


def _code_of(body: Any) -> int | None:
    code = body.get("code") if isinstance(body, dict) else None
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def refusal(answer: Answer, *, creates: bool = False) -> UpstreamError | None:
    """What an answer that is not a success means; None for a success (code 0, 2xx).
    ``creates``: a 2xx we cannot read may hide a task made and paid for (uncertain)."""
    status = answer.status
    body = answer.json_or_none()
    code = _code_of(body)
    message = str(body.get("message") or "")[:300] if isinstance(body, dict) else ""
    if 200 <= status < 300 and code == 0:
        return None
    known = CODES.get(code) if code is not None else None
    if known is not None:
        said = f"code {code}: {message}" if message else f"code {code}"
        generic = status_error(status, answer.headers) if known.transient else None
        retry_after = generic.retry_after if generic is not None else None
        if code in (1302, 1303):
            retry_after = retry_after or THROTTLED_WAIT
        return UpstreamError(
            f"{known.reason}({said})",
            transient=known.transient,
            key_rejected=known.key_rejected,
            retry_after=retry_after,
            http_status=status,
        )
    failure = status_error(status, answer.headers, also_transient=(404,))
    if failure is not None:
        return failure
    if status >= 300 or code is not None:
        said = message or f"HTTP {status}" + (f", code {code}" if code is not None else "")
        return UpstreamError(f"上游拒绝请求: {said}", transient=False, http_status=status)
    return UpstreamError(
        "上游返回了无法解析的内容",
        transient=not creates,
        uncertain=creates,
        http_status=status,
    )


def task_state(body: dict[str, Any], upstream_id: str) -> UpstreamState:
    """The task a query answered about."""
    data = body.get("data")
    if not isinstance(data, dict):
        raise UpstreamError("上游查询结果缺少 data", transient=True)
    status = str(data.get("task_status") or "")
    phase = PHASES.get(status)
    if phase is None:
        raise UpstreamError(f"上游返回未知状态: {status[:40]}", transient=True)
    deducted = data.get("final_unit_deduction")
    usage = {"final_unit_deduction": deducted} if deducted not in (None, "") else None
    if phase == "succeeded":
        result = data.get("task_result")
        images = result.get("images") if isinstance(result, dict) else None
        items = [i for i in images or [] if isinstance(i, dict)] if isinstance(images, list) else []
        found = [i for i in items if isinstance(i.get("url"), str) and i["url"]]
        if not found:
            raise UpstreamError("上游报告成功但没有返回图片地址", transient=True)
        # In the order of their index (an item without one after those with one).
        found.sort(key=lambda i: i["index"] if isinstance(i.get("index"), int) else len(items))
        urls = tuple(str(i["url"]) for i in found)
        return UpstreamState(upstream_id, "succeeded", status, 100, urls, usage=usage)
    if phase == "failed":
        said = str(data.get("task_status_msg") or "")[:400]
        if any(word in said.lower() for word in CONTENT_WORDS):
            reason = f"内容审核未通过:上游判定内容不合规({said})"
        else:
            reason = f"图片生成失败:{said or '上游未说明原因'}"
        return UpstreamState(upstream_id, "failed", status, error=reason, usage=usage)
    return UpstreamState(upstream_id, phase, status, usage=usage)


class KlingProvider(HttpUpstream):
    name = "kling"
    # A token's life (Kling's docs: 30 minutes), and how long before its end a new one is
    # minted: a call signed just before the end would otherwise arrive expired.
    token_lifetime = 1800.0
    token_renew_before = 300.0

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        rps: float = 5.0,
        pacer: Pacer | None = None,
        token_lifetime: float | None = None,
        token_renew_before: float | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout=timeout, rps=rps, pacer=pacer)
        self._pair = split_key(api_key)
        if token_lifetime is not None:
            self.token_lifetime = token_lifetime
        if token_renew_before is not None:
            self.token_renew_before = token_renew_before
        self._token = ""
        self._token_expires = 0.0

    def key_headers(self) -> dict[str, str]:
        # The key itself never goes upstream: each request carries a token signed with it.
        return {}

    def _authorization(self, *, renew: bool = False) -> dict[str, str]:
        if self._pair is None:
            raise UpstreamError(KEY_FORMAT, transient=False, key_rejected=True)
        now = time.time()
        if renew or self._token_expires - now < self.token_renew_before:
            access, secret = self._pair
            self._token = mint_token(access, secret, self.token_lifetime, now)
            self._token_expires = int(now + self.token_lifetime)
        return {"Authorization": f"Bearer {self._token}"}

    async def _call(
        self, method: str, path: str, *, task_no: str, creates: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        """The answer's JSON object, when Kling says it succeeded; an UpstreamError else."""
        answer = await self._send(
            method, path, task_no=task_no, headers=self._authorization(), **kwargs
        )
        if answer.status == 401 and _code_of(answer.json_or_none()) == TOKEN_EXPIRED:
            # Refused before anything was made: a fresh token, and the same call once more.
            answer = await self._send(
                method, path, task_no=task_no, headers=self._authorization(renew=True), **kwargs
            )
        failure = refusal(answer, creates=creates)
        if failure is not None:
            raise failure
        body = answer.json_or_none()
        assert isinstance(body, dict)  # refusal() passes only a JSON object with code 0
        return body

    async def submit(self, job: UpstreamJob) -> UpstreamState:
        payload: dict[str, Any] = {
            **job.params,
            "model_name": job.upstream_model,
            "prompt": job.prompt,
            "n": job.count,
        }
        if not job.upstream_model:
            del payload["model_name"]  # Kling's default, kling-v1
        if len(job.image_urls) > 1:
            raise UpstreamError(
                f"可灵图像生成只接受一张参考图,该任务有 {len(job.image_urls)} 张", transient=False
            )
        if job.image_urls:
            payload["image"] = job.image_urls[0]
            payload.pop("negative_prompt", None)
        else:
            for field in REFERENCE_FIELDS:
                payload.pop(field, None)
        body = await self._call(
            "POST",
            "/v1/images/generations",
            task_no=job.task_no,
            creates=True,
            logged={"body": digest(payload)},
            json=payload,
        )
        data = body.get("data")
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = str(task_id)
        if not isinstance(task_id, str) or not task_id:
            raise UpstreamError("上游接受了任务但未返回任务编号", transient=True, uncertain=True)
        assert isinstance(data, dict)
        # Whatever it says now (a prompt refused at once is already "failed"), the poll
        # tells the outcome.
        return UpstreamState(task_id, "queued", str(data.get("task_status") or "submitted"))

    async def poll(self, upstream_id: str, task_no: str = "") -> UpstreamState:
        body = await self._call(
            "GET", f"/v1/images/generations/{quote(upstream_id, safe='')}", task_no=task_no
        )
        return task_state(body, upstream_id)

    async def check(self) -> None:
        body = await self._call(
            "GET", "/v1/images/generations", task_no="", params={"pageNum": 1, "pageSize": 1}
        )
        if not isinstance(body.get("data"), list):
            raise UpstreamError("上游返回了无法解析的内容", transient=True)
