"""即梦 (Jimeng) through Volcengine's visual service: submit, then ask for the result.
Every answer we give a meaning to is here.

- The channel's key is ``ACCESS_KEY:SECRET_KEY`` (the Volcengine access key ID and its
  secret). Each request is signed with Volcengine's HMAC-SHA256 scheme (``sign``): region
  ``cn-north-1``, service ``cv``; the secret never leaves this process.
- submit: ``POST /?Action=CVSync2AsyncSubmitTask&Version=2022-08-31`` with JSON
  ``{"req_key": <upstreamModel>, "prompt", "image_urls"?, ...upstreamParams}``. A chosen
  ``size`` spelt ``WxH`` goes as ``width`` and ``height`` (a number stays ``size``: 4.0's
  area). → ``{"code": 10000, "data": {"task_id"}}``. The API takes no picture count: a job
  makes what its req_key makes (3.1 one picture; 4.0 as many as the prompt asks, one with
  ``force_single``), and a task of n pictures gets what the job made, the rest refunded.
- result: ``POST /?Action=CVSync2AsyncGetResult&Version=2022-08-31`` with ``{"req_key",
  "task_id", "req_json": "{\\"return_url\\": …}"}`` → ``data.status`` ``in_queue``,
  ``generating``, ``done`` (``binary_data_base64``: the pictures inline, stored as they
  are; or ``image_urls``, valid 24 hours, when the channel model sets ``return_url``),
  ``not_found``, ``expired``. A job that failed answers with its error ``code`` instead.
  Poll gets only the upstream id, so the id carries the req_key and the return_url choice.
- Errors: ``code`` other than 10000, with the HTTP status the documentation gives it:
  moderation (50411/50412/50413/50511/50512/50518/50519) fails the task saying
  "内容审核未通过:"; 50429 (QPS) and 50430 (concurrency) are rate limits; 50500/50501
  internal errors (no job); 50400 refuses the account; other codes refuse the request. The
  gateway's own refusals (``ResponseMetadata.Error``: SignatureDoesNotMatch,
  InvalidAccessKey … with HTTP 401/403) refuse the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.http import HttpUpstream, status_error

VERSION = "2022-08-31"
SUBMIT = "CVSync2AsyncSubmitTask"
RESULT = "CVSync2AsyncGetResult"
REGION = "cn-north-1"
SERVICE = "cv"
ALGORITHM = "HMAC-SHA256"
OK = 10000
# The req_key the channel test asks about (a task id that does not exist: nothing is made).
CHECK_REQ_KEY = "jimeng_t2i_v31"
# Pictures come inline in base64: 4.0 makes up to 15 of up to 4K each.
MAX_ANSWER_BYTES = 160 * 1024 * 1024
PHASES = {"in_queue": "queued", "generating": "processing", "done": "succeeded"}
GONE = {
    "not_found": "上游任务不存在或已过期(即梦只保留 12 小时)",
    "expired": "上游任务已过期,需重新提交",
}
# What each moderation code refused, in the words the task's error shows.
MODERATION = {
    50411: "上游判定输入图片不合规(Pre Img Risk Not Pass)",
    50412: "上游判定提示词含敏感内容(Text Risk Not Pass)",
    50413: "上游判定提示词含敏感词或版权词(Post Text Risk Not Pass)",
    50511: "上游判定生成的图片不合规(Post Img Risk Not Pass)",
    50512: "上游判定输出文本不合规(Post Text Risk Not Pass)",
    50518: "上游判定输入图片涉及版权(Pre Img Risk Not Pass: Copyright)",
    50519: "上游判定生成的图片涉及版权(Post Img Risk Not Pass: Copyright)",
}
RATE_LIMITS = {50429: "QPS 超限", 50430: "并发超限"}
# Failures of the upstream's own machinery: no picture was made, another try may work.
INTERNAL = {
    50500: "内部错误",
    50501: "内部算法错误",
    50520: "审核服务异常",
    50521: "版权词服务异常",
    50522: "版权图服务异常",
}
ACCOUNT_REFUSED = 50400
# The gateway's answers to a request whose key or signature it does not accept.
KEY_REFUSALS = {
    "InvalidAccessKey",
    "SignatureDoesNotMatch",
    "MissingAuthenticationToken",
    "MissingSignature",
    "InvalidCredential",
    "AccessDenied",
    "LackPolicy",
}
MALFORMED_KEY = "渠道密钥格式错误:即梦(火山引擎)密钥须为 AccessKeyID:SecretAccessKey"


def split_key(key: str) -> tuple[str, str] | None:
    """(access key ID, secret) of a channel key ``AK:SK``; None when it is not one."""
    access, sep, secret = key.strip().partition(":")
    if not sep or not access or not secret or any(c.isspace() for c in access + secret):
        return None
    return access, secret


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _encode(value: str) -> str:
    # RFC 3986: everything but the unreserved characters percent-encoded.
    return quote(value, safe="-_.~")


def sign(
    *,
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    now: datetime,
    content_type: str = "application/json",
) -> dict[str, str]:
    """The headers that sign one request (Volcengine's HMAC-SHA256 request signing, as its
    SDKs do it): ``Host``, ``Content-Type``, ``X-Date``, ``X-Content-Sha256`` and the
    ``Authorization`` over them, the path, the sorted query and the body's SHA-256."""
    x_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    day = x_date[:8]
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {
        "Content-Type": content_type,
        "Host": host,
        "X-Content-Sha256": payload_hash,
        "X-Date": x_date,
    }
    ordered = sorted((name.lower(), value.strip()) for name, value in headers.items())
    signed_headers = ";".join(name for name, _ in ordered)
    canonical = "\n".join(
        [
            method.upper(),
            quote(path or "/", safe="/-_.~"),
            "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(query.items())),
            "".join(f"{name}:{value}\n" for name, value in ordered),
            signed_headers,
            payload_hash,
        ]
    )
    scope = f"{day}/{REGION}/{SERVICE}/request"
    to_sign = "\n".join([ALGORITHM, x_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing_key = secret_key.encode()
    for part in (day, REGION, SERVICE, "request"):
        signing_key = _hmac(signing_key, part)
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return headers


def _host_of(base_url: str) -> str:
    """The ``Host`` header for ``base_url``, as an HTTP client sends it (no default port)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def _message(body: dict[str, Any]) -> str:
    return str(body.get("message") or "")[:200]


def business_error(code: int, body: dict[str, Any], status: int) -> UpstreamError:
    """What a ``code`` other than 10000 means, at submit or when asking for a result."""
    message = _message(body)
    if code in MODERATION:
        return UpstreamError(
            f"内容审核未通过:{MODERATION[code]}", transient=False, http_status=status
        )
    if code in RATE_LIMITS:
        return UpstreamError(
            f"上游限流({code} {RATE_LIMITS[code]})", transient=True, http_status=status
        )
    if code in INTERNAL:
        return UpstreamError(
            f"上游服务错误({code} {INTERNAL[code]})", transient=True, http_status=status
        )
    if code == ACCOUNT_REFUSED:
        return UpstreamError(
            f"上游拒绝访问({code} {message or 'Access Denied'}):"
            "请确认密钥有效、账号已实名且已开通该模型(req_key)的服务",
            transient=False,
            key_rejected=True,
            http_status=status,
        )
    return UpstreamError(
        f"上游拒绝任务({code} {message or '未说明原因'})", transient=False, http_status=status
    )


def gateway_error(body: Any, status: int, headers: Mapping[str, str]) -> UpstreamError | None:
    """The gateway's own refusal (``ResponseMetadata.Error``), or a bare HTTP failure."""
    metadata = body.get("ResponseMetadata") if isinstance(body, dict) else None
    error = metadata.get("Error") if isinstance(metadata, dict) else None
    if isinstance(error, dict) and error.get("Code"):
        code = str(error["Code"])[:60]
        if code in KEY_REFUSALS or status in (401, 403):
            return UpstreamError(
                f"上游鉴权失败({code}),请检查渠道的 AccessKey 与 SecretKey",
                transient=False,
                key_rejected=True,
                http_status=status,
            )
        if code == "InvalidTimestamp":
            return UpstreamError(
                "上游拒绝了签名时间(InvalidTimestamp),请检查服务器时钟",
                transient=True,
                http_status=status,
            )
        # The request's shape (an unknown Action, a missing parameter) or the gateway's
        # own failure: not the task's content; another channel or a later try may work.
        return UpstreamError(
            f"上游网关拒绝请求({code} HTTP {status})", transient=True, http_status=status
        )
    return status_error(status, headers, also_transient=(404,))


def _pictures(data: dict[str, Any]) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
    """The job's pictures inline (decoded) and its picture URLs."""
    pictures: list[bytes] = []
    for item in data.get("binary_data_base64") or []:
        if not isinstance(item, str) or not item:
            continue
        try:
            pictures.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise UpstreamError("上游返回的图片数据无法解码", transient=False) from exc
    urls = tuple(u for u in data.get("image_urls") or [] if isinstance(u, str) and u)
    return tuple(pictures), urls


def result_state(upstream_id: str, answer_status: int, body: dict[str, Any]) -> UpstreamState:
    """A job's state from an answer to ``CVSync2AsyncGetResult`` that has a ``code``."""
    code = body["code"]
    if code != OK:
        failure = business_error(code, body, answer_status)
        if failure.transient or failure.key_rejected:
            raise failure
        # A job that ended in refusal (moderation of its output, a bad request): its
        # reason is the task's error as it is.
        return UpstreamState(upstream_id, "failed", str(code), error=failure.message)
    data = body.get("data")
    if not isinstance(data, dict):
        raise UpstreamError("上游返回了无法解析的内容", transient=True, http_status=answer_status)
    status = str(data.get("status") or "")
    if status in GONE:
        return UpstreamState(upstream_id, "failed", status, error=GONE[status])
    phase = PHASES.get(status)
    if phase is None:
        raise UpstreamError(f"上游返回未知状态: {status[:40]}", transient=True)
    if phase != "succeeded":
        return UpstreamState(upstream_id, phase, status)  # type: ignore[arg-type]
    pictures, urls = _pictures(data)
    if not pictures and not urls:
        return UpstreamState(upstream_id, "failed", status, error="上游报告完成但没有返回图片")
    # Jimeng bills by the pictures a job returns: they are its usage.
    made = len(pictures) or len(urls)
    return UpstreamState(
        upstream_id,
        "succeeded",
        status,
        100,
        () if pictures else urls,
        pictures=pictures,
        usage={"image_count": made},
    )


def _upstream_id(req_key: str, task_id: str, return_url: bool) -> str:
    return f"{req_key}:{task_id}" + (":url" if return_url else "")


def parse_upstream_id(upstream_id: str) -> tuple[str, str, bool]:
    """(req_key, task id, whether results come as URLs) of an id ``_upstream_id`` made."""
    parts = upstream_id.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UpstreamError(f"无法识别的即梦任务编号: {upstream_id[:64]}", transient=False)
    return parts[0], parts[1], len(parts) == 3 and parts[2] == "url"


def submit_body(job: UpstreamJob) -> tuple[dict[str, Any], bool]:
    """The submit's JSON body, and whether the results are asked for as URLs."""
    params = dict(job.params)
    return_url = params.pop("return_url", False) is True
    size = params.get("size")
    if isinstance(size, str):
        width, sep, height = size.lower().partition("x")
        if not (sep and width.isdigit() and height.isdigit()):
            raise UpstreamError(
                f"渠道配置错误:即梦的 size 须为 宽x高(如 1328x1328): {size[:32]}",
                transient=False,
            )
        del params["size"]
        params["width"], params["height"] = int(width), int(height)
    payload: dict[str, Any] = {**params, "req_key": job.upstream_model, "prompt": job.prompt}
    if job.image_urls:
        payload["image_urls"] = list(job.image_urls)
    return payload, return_url


class JimengProvider(HttpUpstream):
    name = "jimeng"
    max_answer_bytes = MAX_ANSWER_BYTES

    def __init__(self, base_url: str, api_key: str, **kwargs: Any) -> None:
        super().__init__(base_url, api_key, **kwargs)
        self._pair = split_key(api_key)
        self._host = _host_of(self.base_url)
        self._path = (urlsplit(self.base_url).path or "") + "/"
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def key_headers(self) -> dict[str, str]:
        # The key is never a header of its own here: each request carries its signature.
        return {}

    async def _call(
        self, action: str, payload: dict[str, Any], *, task_no: str, creates: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, the answer's JSON) of one signed call: the body has a ``code``
        (the service answered; 10000 or not), or an UpstreamError says what went wrong.
        ``creates``: a 2xx we cannot read may hide a job made and paid for (uncertain)."""
        if self._pair is None:
            raise UpstreamError(MALFORMED_KEY, transient=False, key_rejected=True)
        access_key, secret_key = self._pair
        query = {"Action": action, "Version": VERSION}
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = sign(
            method="POST",
            host=self._host,
            path=self._path,
            query=query,
            body=body,
            access_key=access_key,
            secret_key=secret_key,
            now=self.clock(),
        )
        answer = await self._send(
            "POST",
            f"/?Action={action}&Version={VERSION}",
            task_no=task_no,
            logged={"action": action},
            data=body,
            headers=headers,
        )
        status = answer.status
        parsed = answer.json_or_none()
        if isinstance(parsed, dict) and isinstance(parsed.get("code"), int):
            return status, parsed
        failure = gateway_error(parsed, status, answer.headers)
        if failure is not None:
            raise failure
        if status >= 400:
            raise UpstreamError(f"上游拒绝请求(HTTP {status})", transient=True, http_status=status)
        raise UpstreamError(
            "上游返回了无法解析的内容", transient=not creates, uncertain=creates, http_status=status
        )

    async def submit(self, job: UpstreamJob) -> UpstreamState:
        payload, return_url = submit_body(job)
        status, body = await self._call(SUBMIT, payload, task_no=job.task_no, creates=True)
        code = body["code"]
        if code != OK:
            raise business_error(code, body, status)
        data = body.get("data")
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = str(task_id)
        if not isinstance(task_id, str) or not task_id or ":" in task_id:
            raise UpstreamError("上游接受了任务但未返回任务编号", transient=True, uncertain=True)
        upstream_id = _upstream_id(job.upstream_model, task_id, return_url)
        return UpstreamState(upstream_id, "queued", "in_queue")

    async def poll(self, upstream_id: str, task_no: str = "") -> UpstreamState:
        req_key, task_id, return_url = parse_upstream_id(upstream_id)
        payload = {
            "req_key": req_key,
            "task_id": task_id,
            "req_json": json.dumps({"return_url": return_url}),
        }
        status, body = await self._call(RESULT, payload, task_no=task_no)
        return result_state(upstream_id, status, body)

    async def check(self) -> None:
        """Asks for the result of a task that does not exist: an answer from the service
        (whatever its ``code``) means the gateway took the signature, so address and key
        are good; starts nothing."""
        status, body = await self._call(
            RESULT,
            {"req_key": CHECK_REQ_KEY, "task_id": "0", "req_json": '{"return_url":false}'},
            task_no="",
        )
        code = body["code"]
        if code != OK:
            failure = business_error(code, body, status)
            if failure.transient or failure.key_rejected:
                raise failure
