"""Black Forest Labs' FLUX API (``https://api.bfl.ai``): create, poll. Every answer we give
a meaning to is here.

- create: ``POST /v1/{model}`` (the channel model's ``upstreamModel``: ``flux-pro-1.1``,
  ``flux-pro-1.1-ultra``, ``flux-dev``, ``flux-kontext-pro``, ``flux-kontext-max`` …) with the
  key in ``x-key`` and JSON ``{prompt, width?, height?, aspect_ratio?, seed?,
  safety_tolerance?, output_format?, prompt_upsampling?, raw?, input_image? …}`` (the
  channel model's ``upstreamParams`` and the task's choices). It answers ``{id,
  polling_url}`` (and, on newer models, ``cost`` in credits, kept as the job's usage).
- poll: ``GET polling_url`` (with the key): ``Pending``, ``Ready`` (``result.sample``, a
  signed URL valid 10 minutes: the worker copies it as soon as it reads it), ``Request
  Moderated``, ``Content Moderated``, ``Error``/``Failed``, ``Task not found``.
- one picture per request: a task of several pictures gets one, and the worker refunds
  the rest.
- ``check``: ``GET /v1/credits`` (free), which also tells an account with no credits left.

The polling URL may name a regional host (``https://api.us1.bfl.ai/v1/get_result?id=…``),
and BFL asks that it be polled as given. It carries our key, so it is followed only on the
channel's own origin or, for a channel on BFL's own domain, on an ``https`` subdomain of it;
any other is ignored and the job polled at ``{baseUrl}/v1/get_result?id=…``.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import SplitResult, urlsplit

from shengtu.logs import get_logger
from shengtu.providers.base import UpstreamError, UpstreamJob, UpstreamState
from shengtu.providers.http import Answer, HttpUpstream, status_error
from shengtu.providers.pacing import Pacer

log = get_logger("shengtu.upstream")

# BFL's own registrable domains: a polling URL on a subdomain of these is BFL's.
BFL_DOMAINS = ("bfl.ai", "bfl.ml")
# What a task's ``upstream_id`` column holds (``ai_task.upstream_id``).
MAX_UPSTREAM_ID = 128
# Between the job's id and its polling URL in ``upstream_id`` (neither has one).
SEPARATOR = "|"
# Regional hosts a provider polls through (each a session): BFL has a handful.
MAX_POLL_HOSTS = 8
# Models sized by ``aspect_ratio`` (the others by ``width`` and ``height``).
SIZED_BY_RATIO = ("ultra", "kontext")
# width × height for an aspect ratio, on a model sized in pixels: about a megapixel, each
# side a multiple of 32 within 256–1440, as FLUX1.1 [pro] and [dev] take them.
DIMENSIONS = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
    "4:3": (1152, 896),
    "3:4": (896, 1152),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "21:9": (1440, 608),
    "9:21": (608, 1440),
}
MODERATED = {
    "Request Moderated": "内容审核未通过:上游判定请求(提示词或参考图)含敏感内容",
    "Content Moderated": "内容审核未通过:上游判定生成的图片含敏感内容",
}
# Usage figures a create or a result may carry (credits, megapixels in and out).
USAGE_FIELDS = ("cost", "input_mp", "output_mp")


def _detail(body: Any) -> str:
    """The reason in an error body: FastAPI's ``detail`` (a string, or the validation
    errors' list), or a ``message``/``error``."""
    if not isinstance(body, dict):
        return ""
    detail = body.get("detail") or body.get("message") or body.get("error") or ""
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                where = [str(p) for p in item.get("loc") or [] if p != "body"]
                parts.append(f"{'.'.join(where)}: {item.get('msg', '')}".strip(": "))
        detail = "; ".join(parts)
    return str(detail)[:300]


def _usage(body: dict[str, Any]) -> dict[str, Any] | None:
    found = {
        k: body[k]
        for k in USAGE_FIELDS
        if isinstance(body.get(k), int | float) and not isinstance(body.get(k), bool)
    }
    return found or None


def _ratio_of(text: str) -> tuple[int, int] | None:
    left, sep, right = text.partition(":")
    if not sep or not left.isdigit() or not right.isdigit() or not int(left) or not int(right):
        return None
    return int(left), int(right)


def _dimensions(ratio: str) -> tuple[int, int] | None:
    """width × height of about a megapixel for ``ratio``, each a multiple of 32 in
    256–1440 (a ratio beyond 21:9 is brought to it); None when it is not a ratio."""
    if ratio in DIMENSIONS:
        return DIMENSIONS[ratio]
    parsed = _ratio_of(ratio)
    if parsed is None:
        return None
    wide = min(max(parsed[0] / parsed[1], 9 / 21), 21 / 9)

    def side(value: float) -> int:
        return min(1440, max(256, 32 * round(value / 32)))

    return side(math.sqrt(1024 * 1024 * wide)), side(math.sqrt(1024 * 1024 / wide))


def _sized(payload: dict[str, Any], model: str) -> None:
    """The payload's size in the fields ``model`` takes: a ratio model gets
    ``aspect_ratio`` (a ``size`` of ``WxH`` reduced to one), a pixel model ``width`` and
    ``height`` (from ``size``, or from an ``aspect_ratio``), unless the channel set them."""
    size = payload.pop("size", None)
    width = height = None
    if isinstance(size, str):
        w, _, h = size.lower().partition("x")
        if w.isdigit() and h.isdigit():
            width, height = int(w), int(h)
    if any(word in model for word in SIZED_BY_RATIO):
        if width and height and "aspect_ratio" not in payload:
            divisor = math.gcd(width, height)
            payload["aspect_ratio"] = f"{width // divisor}:{height // divisor}"
        return
    ratio = payload.pop("aspect_ratio", None)
    if width is None and isinstance(ratio, str):
        found = _dimensions(ratio)
        if found is None:
            raise UpstreamError(f"参数错误:无法识别的宽高比 {ratio[:20]}", transient=False)
        width, height = found
    if width and height:
        payload.setdefault("width", width)
        payload.setdefault("height", height)


class BflProvider(HttpUpstream):
    name = "bfl"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        rps: float = 5.0,
        pacer: Pacer | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout=timeout, rps=rps, pacer=pacer)
        self._timeout_seconds = timeout
        # Regional hosts' providers by origin: their own sessions, this key's pace.
        self._regions: dict[str, BflProvider] = {}

    def key_headers(self) -> dict[str, str]:
        # BFL takes its key in ``x-key``; nothing else carries it.
        return {"x-key": self._key, "accept": "application/json"}

    async def aclose(self) -> None:
        for region in self._regions.values():
            await region.aclose()
        await super().aclose()

    def _region(self, origin: str) -> BflProvider | None:
        region = self._regions.get(origin)
        if region is None and len(self._regions) < MAX_POLL_HOSTS:
            region = BflProvider(
                origin, self._key, timeout=self._timeout_seconds, pacer=self._pacer
            )
            self._regions[origin] = region
        return region

    def _followed(self, polling_url: str) -> SplitResult | None:
        """The polling URL, when it may carry our key: on the channel's own origin, or an
        ``https`` subdomain of BFL's domain for a channel on it; else None."""
        try:
            url, base = urlsplit(polling_url), urlsplit(self.base_url)
            url_port, base_port = url.port, base.port
        except ValueError:
            return None
        if url.scheme not in ("http", "https") or url.username or url.password:
            return None
        host, base_host = url.hostname or "", base.hostname or ""
        if not host:
            return None
        if (url.scheme, host, url_port) == (base.scheme, base_host, base_port):
            return url
        domain = ".".join(base_host.split(".")[-2:])
        if (
            domain in BFL_DOMAINS
            and url.scheme == "https"
            and url_port in (None, 443)
            and host.endswith("." + domain)
        ):
            return url
        return None

    def _upstream_id(self, job_id: str, polling_url: Any, task_no: str) -> str:
        """What the task keeps to poll its job: the id, and the polling URL when it is not
        the one the base URL gives anyway (and fits the column)."""
        if not isinstance(polling_url, str) or not polling_url:
            return job_id
        if polling_url == f"{self.base_url}/v1/get_result?id={job_id}":
            return job_id
        if self._followed(polling_url) is None:
            log.warning(
                "bfl_polling_url_ignored",
                task_no=task_no,
                host=(urlsplit(polling_url).hostname or "")[:100],
            )
            return job_id
        kept = f"{job_id}{SEPARATOR}{polling_url}"
        if len(kept) > MAX_UPSTREAM_ID:
            log.warning("bfl_polling_url_too_long", task_no=task_no, length=len(polling_url))
            return job_id
        return kept

    async def _json(
        self, answer: Answer, *, creates: bool = False, polled: bool = False
    ) -> dict[str, Any]:
        """The answer's JSON object, or the UpstreamError its status means. ``creates``: a
        2xx we cannot read may hide a job made and paid for (uncertain). ``polled``: a 404
        that says ``Task not found`` is that status, not a missing route."""
        status = answer.status
        body = answer.json_or_none()
        if polled and status == 404 and isinstance(body, dict) and body.get("status"):
            return body  # the job's own status ("Task not found"), not a missing route
        if status == 402:
            raise UpstreamError(
                "上游账户余额不足", transient=False, key_rejected=True, http_status=status
            )
        if status == 429:
            # BFL's: beyond the key's active tasks (24), until one of them ends.
            throttled = status_error(status, answer.headers)
            assert throttled is not None
            detail = _detail(body)
            raise UpstreamError(
                throttled.message + (f":{detail}" if detail else ""),
                transient=True,
                retry_after=throttled.retry_after,
                http_status=status,
            )
        # 404: a model (or route) this upstream lacks; certainly no job made.
        failure = status_error(status, answer.headers, also_transient=(404,))
        if failure is not None:
            raise failure
        if status >= 400:
            raise UpstreamError(
                f"上游拒绝任务: {_detail(body) or f'HTTP {status}'}",
                transient=False,
                http_status=status,
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
        # job.count is not sent: a BFL request makes one picture; the worker refunds the rest.
        model = job.upstream_model.strip("/")
        if not model or "/" in model or "?" in model:
            raise UpstreamError(
                f"渠道配置错误:BFL 模型名无效: {job.upstream_model[:64]}", transient=True
            )
        params = dict(job.params)
        image_field = str(params.pop("imageField", "input_image"))
        payload: dict[str, Any] = {"prompt": job.prompt, **params}
        _sized(payload, model)
        for index, url in enumerate(job.image_urls):
            payload[image_field if index == 0 else f"{image_field}_{index + 1}"] = url
        answer = await self._send("POST", f"/v1/{model}", task_no=job.task_no, json=payload)
        body = await self._json(answer, creates=True)
        job_id = body.get("id")
        if not isinstance(job_id, str) or not job_id or SEPARATOR in job_id:
            raise UpstreamError("上游接受了任务但未返回任务编号", transient=True, uncertain=True)
        upstream_id = self._upstream_id(job_id, body.get("polling_url"), job.task_no)
        return UpstreamState(upstream_id, "queued", "submitted", usage=_usage(body))

    async def poll(self, upstream_id: str, task_no: str = "") -> UpstreamState:
        job_id, _, polling_url = upstream_id.partition(SEPARATOR)
        via, path = self._polled_at(polling_url)
        if via is None:
            answer = await self._send(
                "GET", "/v1/get_result", task_no=task_no, params={"id": job_id}
            )
        else:
            answer = await via._send("GET", path, task_no=task_no)
        return self.state(upstream_id, await self._json(answer, polled=True))

    def _polled_at(self, polling_url: str) -> tuple[BflProvider | None, str]:
        """Which provider asks the kept polling URL, and its path (None: none is kept, or
        it may not have the key: ``{base}/v1/get_result`` is asked). Checked at every poll,
        not only when kept: the key goes wherever the column points."""
        url = self._followed(polling_url) if polling_url else None
        if url is None:
            return None, ""
        if polling_url.startswith(self.base_url + "/"):
            return self, polling_url[len(self.base_url) :]
        return self._region(f"{url.scheme}://{url.netloc}"), f"{url.path}?{url.query}"

    def state(self, upstream_id: str, body: dict[str, Any]) -> UpstreamState:
        """What a ``get_result`` answer says of the job."""
        status = str(body.get("status") or "")
        if status == "Ready":
            result = body.get("result")
            sample = result.get("sample") if isinstance(result, dict) else None
            if not isinstance(sample, str) or not sample:
                raise UpstreamError("上游报告成功但没有返回图片地址", transient=True)
            return UpstreamState(
                upstream_id, "succeeded", status, 100, (sample,), usage=_usage(body)
            )
        if status == "Pending":
            return UpstreamState(upstream_id, "processing", status, _progress(body))
        if status in MODERATED:
            return UpstreamState(
                upstream_id, "failed", status, error=MODERATED[status] + _reasons(body)
            )
        if status in ("Error", "Failed"):
            reason = _reasons(body).strip("()") or _detail(body) or "上游未说明原因"
            return UpstreamState(upstream_id, "failed", status, error=f"图片生成失败:{reason}")
        if status == "Task not found":
            return UpstreamState(
                upstream_id, "failed", status, error="上游找不到该任务(Task not found)"
            )
        raise UpstreamError(f"上游返回未知状态: {status[:40]}", transient=True)

    async def check(self) -> None:
        answer = await self._send("GET", "/v1/credits", task_no="")
        credits = (await self._json(answer)).get("credits")
        if isinstance(credits, int | float) and credits <= 0:
            raise UpstreamError("上游账户余额不足", transient=False, key_rejected=True)


def _progress(body: dict[str, Any]) -> int | None:
    """BFL's ``progress``, a fraction (or a percentage), as a percentage."""
    value = body.get("progress")
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        return None
    return int(min(99, value * 100 if value <= 1 else value))


def _reasons(body: dict[str, Any]) -> str:
    """The reasons ``details`` gives (``{"Moderation Reasons": [...]}``), as ``(…)``."""
    details = body.get("details")
    if not isinstance(details, dict):
        return ""
    words: list[str] = []
    for value in details.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str | int | float) and str(item).strip():
                words.append(str(item).strip()[:80])
    return f"({', '.join(words[:5])})" if words else ""
