"""The 即梦 double: Volcengine's visual API at ``/jimeng/`` (one path; the ``Action`` query
parameter picks ``CVSync2AsyncSubmitTask`` or ``CVSync2AsyncGetResult``), every request
signed with Volcengine's HMAC-SHA256 scheme and the signature checked for real: recomputed
here, over the request as it arrived (path, query, signed headers, the body's SHA-256),
with the secret of the access key it names. The sandbox's keys are ``AK:SK`` pairs (a key
without a colon stands for itself as both). A request that does not pass answers as the
gateway does: HTTP 401 and ``ResponseMetadata.Error`` ``MissingAuthenticationToken``,
``InvalidAccessKey`` (an unknown access key) or ``SignatureDoesNotMatch`` (a wrong secret,
a body or query changed after signing); a signing time more than 15 minutes off answers
400 ``InvalidTimestamp``.

A job makes one picture (the API has no picture count: a task of n gets one, the rest
refunded; ``fewer`` changes nothing), drawn at the ratio nearest its ``width``/``height``,
and comes as ``binary_data_base64`` unless the result is asked for with
``req_json`` ``{"return_url": true}``, then as ``image_urls`` served by the shared results
route (where the URL words happen). The words show as:

- ``fail``: the result answers HTTP 400 ``code`` 50413 (Post Text Risk Not Pass); with
  reference pictures, the submit answers 400 ``code`` 50411 (Pre Img Risk Not Pass)
- ``error500``: the submit answers 500 ``code`` 50500 (Internal Error)
- ``submit429``: the first submit answers 429 ``code`` 50429 (QPS limit), with Retry-After
- ``poll429``: results answer 429 ``code`` 50430 (concurrency limit)
- ``timeout``: the job stays ``generating``
- ``slowsubmit`` / ``slowpoll``: answers after SLOW_SECONDS (the job is made all the same)
- ``garbage``: results answer malformed JSON; ``status7``: ``data.status`` ``running``
- ``badimage``, ``html``, ``truncated``: the inline picture is an HTML page or half a PNG
  (with ``return_url``: the shared route's faults, as every URL word)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shengtu.providers.sandbox.common import (
    SIZES,
    SLOW_SECONDS,
    Double,
    parse_directive,
    parse_job_id,
    picture_id,
    result_urls,
    retry_after_headers,
)

VERSION = "2022-08-31"
REGION = "cn-north-1"
SERVICE = "cv"
SKEW_SECONDS = 15 * 60
_AUTH_RE = re.compile(
    r"^HMAC-SHA256 Credential=(?P<ak>[^/\s]+)/(?P<day>\d{8})/(?P<region>[^/\s]+)/"
    r"(?P<service>[^/\s]+)/request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
# The gateway's refusals: (HTTP status, numeric code, message).
GATEWAY = {
    "MissingAuthenticationToken": (401, 100003, "Request is missing Authentication Token."),
    "InvalidAccessKey": (401, 100009, "The accesskey [{0}] included in the request is invalid."),
    "SignatureDoesNotMatch": (
        401,
        100010,
        "The request signature we calculated does not match the signature you provided. "
        "Check your Secret Access Key and signing method. Consult the service "
        "documentation for details.",
    ),
    "InvalidTimestamp": (400, 100006, "The Signature of the request is expired."),
    "InvalidActionOrVersion": (404, 100008, "Could not find operation {0} for version {1}."),
}
LIMIT_MESSAGES = {
    50429: "Request Has Reached API Limit, Please Try Later",
    50430: "Request Has Reached API Concurrent Limit, Please Try Later",
}


def _request_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(9).upper()


def gateway_refusal(code: str, action: str = "", *names: str) -> JSONResponse:
    status, number, message = GATEWAY[code]
    return JSONResponse(
        {
            "ResponseMetadata": {
                "RequestId": _request_id(),
                "Action": action,
                "Version": VERSION,
                "Service": SERVICE,
                "Region": REGION,
                "Error": {"CodeN": number, "Code": code, "Message": message.format(*names)},
            }
        },
        status_code=status,
    )


def reply(
    code: int,
    message: str,
    data: Any,
    status: int = 200,
    retry_after: int | None = None,
) -> JSONResponse:
    """The service's answer: ``code`` (10000 is success) and ``data`` (null on an error)."""
    return JSONResponse(
        {
            "code": code,
            "data": data,
            "message": message,
            "request_id": _request_id(),
            "status": code,
            "time_elapsed": "12.345678ms",
        },
        status_code=status,
        headers=retry_after_headers(retry_after),
    )


def invalid(message: str) -> JSONResponse:
    return reply(50200, f"Request Invalid Args: {message}", None, status=400)


def _nearest_ratio(width: int, height: int) -> str:
    wanted = width / height
    return min(
        (ratio for ratio in SIZES if ratio != "auto"),
        key=lambda ratio: abs(SIZES[ratio][0] / SIZES[ratio][1] - wanted),
    )


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def expected_signature(
    request: Request, body: bytes, secret: str, day: str, signed: list[str]
) -> str | None:
    """The signature of ``request`` as it arrived, by ``secret``; None when a header it says
    it signed is missing."""
    values = []
    for name in signed:
        value = request.headers.get(name)
        if value is None:
            return None
        values.append(f"{name}:{value.strip()}\n")
    query = request.query_params.multi_items()
    # By name only: the values of one name keep their order.
    pairs = sorted(
        ((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in query), key=lambda kv: kv[0]
    )
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    canonical = "\n".join(
        [
            request.method,
            raw_path.decode("latin-1") or "/",
            "&".join(f"{k}={v}" for k, v in pairs),
            "".join(values),
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{day}/{REGION}/{SERVICE}/request"
    x_date = request.headers.get("x-date", "")
    to_sign = f"HMAC-SHA256\n{x_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = _hmac(_hmac(_hmac(_hmac(secret.encode(), day), REGION), SERVICE), "request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class JimengDouble(Double):
    prefix = "/jimeng"
    # The gateway's clock, against which a signing time is judged (a test sets its own).
    clock: Callable[[], float] = staticmethod(time.time)

    def routes(self) -> list[Route]:
        return [self.route("/", self.visual, "POST")]

    def refused(self) -> Response:
        return gateway_refusal("SignatureDoesNotMatch")

    def pairs(self) -> dict[str, str]:
        """Access key → secret, for each of the sandbox's keys."""
        pairs: dict[str, str] = {}
        for key in self.state.api_keys:
            access, sep, secret = key.partition(":")
            pairs[access] = secret if sep else key
        return pairs

    async def authorized(self, request: Request) -> bool:
        return await self.refusal(request) is None

    async def refusal(self, request: Request) -> Response | None:
        """The gateway's answer to a request it does not accept, or None."""
        action = request.query_params.get("Action", "")
        authorization = request.headers.get("authorization")
        if not authorization:
            return gateway_refusal("MissingAuthenticationToken", action)
        m = _AUTH_RE.match(authorization.strip())
        if m is None:
            return gateway_refusal("SignatureDoesNotMatch", action)
        secret = None
        # Every key compared, so the time taken tells nothing of which one matched.
        for access, candidate in self.pairs().items():
            if secrets.compare_digest(access.encode(), m["ak"].encode()):
                secret = candidate
        if secret is None:
            return gateway_refusal("InvalidAccessKey", action, m["ak"][:64])
        signed = m["signed"].split(";")
        x_date = request.headers.get("x-date", "")
        if (
            m["region"] != REGION
            or m["service"] != SERVICE
            or signed != sorted(set(signed))
            or not {"host", "x-date"} <= set(signed)
            or x_date[:8] != m["day"]
        ):
            return gateway_refusal("SignatureDoesNotMatch", action)
        try:
            signed_at = datetime.strptime(x_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return gateway_refusal("SignatureDoesNotMatch", action)
        body = await request.body()
        wanted = expected_signature(request, body, secret, m["day"], signed)
        if wanted is None or not secrets.compare_digest(wanted, m["signature"]):
            return gateway_refusal("SignatureDoesNotMatch", action)
        if abs(self.clock() - signed_at.timestamp()) > SKEW_SECONDS:
            return gateway_refusal("InvalidTimestamp", action)
        return None

    def route(
        self, path: str, handler: Callable[[Request], Awaitable[Response]], method: str
    ) -> Route:
        # As the base's, with the gateway's own reason for each refusal.
        async def guarded(request: Request) -> Response:
            self.state.count_call()
            refused = await self.refusal(request)
            if refused is not None:
                return refused
            return await handler(request)

        return Route(path, guarded, methods=[method], name=handler.__name__)

    async def visual(self, request: Request) -> Response:
        action = request.query_params.get("Action", "")
        version = request.query_params.get("Version", "")
        handlers = {"CVSync2AsyncSubmitTask": self.submit, "CVSync2AsyncGetResult": self.result}
        handler = handlers.get(action)
        if handler is None or version != VERSION:
            return gateway_refusal("InvalidActionOrVersion", action, action[:64], version[:32])
        try:
            body = json.loads(await request.body())
        except ValueError:
            return invalid("body is not valid JSON")
        if not isinstance(body, dict):
            return invalid("body is not a JSON object")
        return await handler(request, body)

    async def submit(self, request: Request, body: dict[str, Any]) -> Response:
        state = self.state
        req_key, prompt = body.get("req_key"), body.get("prompt")
        if not isinstance(req_key, str) or not req_key:
            return invalid("req_key is required")
        if not isinstance(prompt, str) or not prompt:
            return invalid("prompt is required")
        width, height = body.get("width"), body.get("height")
        if (width is None) != (height is None):
            return invalid("width and height must be set together")
        size = "1:1"
        if width is not None:
            if not all(isinstance(v, int) and 512 <= v <= 4096 for v in (width, height)):
                return invalid("width and height must be integers in [512, 4096]")
            size = _nearest_ratio(width, height)  # type: ignore[arg-type]
        images = body.get("image_urls") or []
        if not isinstance(images, list) or not all(isinstance(u, str) for u in images):
            return invalid("image_urls must be an array of strings")
        if len(images) > 10:
            return invalid("image_urls holds at most 10 images")
        if images:
            state.remember(state.references, prompt, [len(u) for u in images], 50_000)
        directive = parse_directive(prompt)
        if directive == "fail" and images:
            return reply(50411, "Pre Img Risk Not Pass", None, status=400)
        if directive == "error500":
            return reply(50500, "Internal Error", None, status=500)
        if directive == "submit429" and state.throttle_once(prompt):
            return reply(50429, LIMIT_MESSAGES[50429], None, status=429, retry_after=1)
        job_id = state.accept(prompt, size, directive)
        if directive == "slowsubmit":
            await anyio.sleep(SLOW_SECONDS)
        return reply(10000, "Success", {"task_id": job_id})

    async def result(self, request: Request, body: dict[str, Any]) -> Response:
        state = self.state
        req_key, job_id = body.get("req_key"), body.get("task_id")
        if not isinstance(req_key, str) or not req_key:
            return invalid("req_key is required")
        if not isinstance(job_id, str) or not job_id:
            return invalid("task_id is required")
        return_url = False
        if body.get("req_json") is not None:
            try:
                req_json = json.loads(body["req_json"])
            except (TypeError, ValueError):
                return invalid("req_json is not a JSON string")
            if not isinstance(req_json, dict):
                return invalid("req_json is not a JSON object")
            return_url = req_json.get("return_url") is True
        parsed = parse_job_id(job_id)
        if parsed is None:
            return reply(
                10000,
                "Success",
                {"binary_data_base64": None, "image_urls": None, "status": "not_found"},
            )
        state.polls += 1
        polled_at = time.time()
        state.record_poll(job_id, polled_at)
        started_ms, size, directive = parsed
        if directive == "slowpoll":
            await anyio.sleep(SLOW_SECONDS)
        elif directive == "garbage":
            return Response('{"code": 10000, "data": {"status": "do', media_type="application/json")
        elif directive == "status7":
            running = {"binary_data_base64": None, "image_urls": None, "status": "running"}
            return reply(10000, "Success", running)
        elif directive == "poll429":
            return reply(50430, LIMIT_MESSAGES[50430], None, status=429)
        elapsed = polled_at - started_ms / 1000
        data: dict[str, Any] = {"binary_data_base64": None, "image_urls": None}
        if elapsed < state.latency * 0.1:
            data["status"] = "in_queue"
        elif directive == "timeout" or elapsed < state.latency:
            data["status"] = "generating"
        elif directive == "fail":
            return reply(50413, "Post Text Risk Not Pass", None, status=400)
        else:
            data["status"] = "done"
            if return_url:
                data["image_urls"] = result_urls(request, job_id)
            else:
                data["binary_data_base64"] = [
                    base64.b64encode(await self.picture(job_id, 0, size, directive)).decode()
                ]
            if job_id not in state.first_done:
                state.remember(state.first_done, job_id, polled_at, 100_000)
        return reply(10000, "Success", data)

    async def picture(self, job_id: str, index: int, size: str, directive: str) -> bytes:
        """The job's picture ``index`` as the answer carries it inline (spoilt as its
        directive says)."""
        state = self.state
        if directive in ("badimage", "html"):
            return b"<!doctype html><html><body>this is not an image</body></html>"
        key = picture_id(job_id, index)
        png = state.images.get(key)
        if png is None:
            prompt = state.prompts.get(job_id, "(沙箱重启后提示词已不在内存中)")
            png = await state.draw(prompt, size, key)
            state.remember(state.images, key, png, 64)
        return png[: len(png) // 2] if directive == "truncated" else png
