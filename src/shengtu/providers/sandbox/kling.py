"""The 可灵 (Kling) double, mounted under ``/kling`` (its ``/v1/images/generations`` is
OpenAI's path too): ``POST /v1/images/generations`` creates a task, ``GET
/v1/images/generations/{task_id}`` queries it, ``GET /v1/images/generations`` lists (empty).

Auth is checked for real: ``Authorization: Bearer <JWT>``, HS256, whose ``iss`` is the
access key of one of the sandbox's keys (each ``ACCESS:SECRET``; a key without a colon is
its own access and secret key, as the demo's one key), signed with that key's secret, with
``exp`` in the future and ``nbf`` in the past, else a 401 with Kling's codes: 1001 no
header, 1002 not a Bearer JWT (or a claim missing), 1000 an unknown ``iss`` or a wrong
signature, 1003 not yet valid, 1004 expired. The tokens it accepted and the codes it refused
with are kept (``tokens``, ``refusals``) for the tests of renewal.

It checks a create as Kling documents it (1201 for a value it does not take: ``n`` 1 to 9,
the eight aspect ratios, 21:9 not on kling-v1, a reference picture's ``image_reference``
only on kling-v1-5 and required there, no ``negative_prompt`` beside a reference, fidelities
in [0, 1], a prompt of at most 2,500 characters) and makes ``n`` pictures, each at its own
index. The sandbox words, Kling's way:

- ``fail``: the task ends ``failed`` with "Failure to pass the risk control system", as
  Kling's moderation says it;
- ``fewer``: ``task_result.images`` holds one picture fewer than ``n``;
- ``error500``: the create answers 500 with code 5000; ``submit429`` / ``poll429``: 429 with
  code 1302 (no Retry-After: Kling sends none);
- ``timeout``: the task stays ``processing``; ``slowsubmit`` / ``slowpoll``: the answer comes
  after SLOW_SECONDS (the task is made all the same);
- ``garbage``: the query answers broken JSON; ``status7``: ``task_status`` "thinking";
- the URL words (``badimage``, ``result404`` …) spoil the pictures' URLs, served by the
  shared results route.

21:9 is accepted and drawn at 16:9: the sandbox has no 21:9 canvas.
"""

from __future__ import annotations

import secrets
import time
import uuid
import warnings
from collections import Counter, OrderedDict
from typing import Any

import anyio
import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shengtu.providers.sandbox.common import (
    SLOW_SECONDS,
    Double,
    Handler,
    delivered,
    job_count,
    parse_directive,
    parse_job_id,
    result_url,
)

MODELS = ("kling-v1", "kling-v1-5", "kling-v2", "kling-v2-new", "kling-v2-1")
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9")
MAX_N = 9
MAX_PROMPT = 2500
RISK_CONTROL = "Failure to pass the risk control system"
# The units a finished task reports it cost (``final_unit_deduction``): a sandbox figure,
# one a picture.
UNITS_PER_PICTURE = 1


def _kling(
    status: int, code: int, message: str, data: Any = None, *, with_data: bool = False
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
    if with_data or data is not None:
        body["data"] = data
    return JSONResponse(body, status_code=status)


def _refused(code: int, message: str) -> JSONResponse:
    return _kling(401, code, message)


def _invalid(message: str) -> JSONResponse:
    return _kling(400, 1201, message)


def _fraction(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


class KlingDouble(Double):
    prefix = "/kling"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Tokens accepted (in the order first seen) and refusals by code: the renewal
        # tests read them.
        self.tokens: OrderedDict[str, None] = OrderedDict()
        self.refusals: Counter[int] = Counter()

    def routes(self) -> list[Route]:
        return [
            self.route("/v1/images/generations", self.create, "POST"),
            self.route("/v1/images/generations", self.list_tasks, "GET"),
            self.route("/v1/images/generations/{task_id}", self.query, "GET"),
        ]

    def refused(self) -> Response:
        return _refused(1000, "Authentication failed")

    def route(self, path: str, handler: Handler, method: str) -> Route:
        """As ``Double.route``, refusing with the code that says why."""

        async def guarded(request: Request) -> Response:
            self.state.count_call()
            refusal = self.refusal(request)
            if refusal is not None:
                return refusal
            return await handler(request)

        return Route(path, guarded, methods=[method], name=handler.__name__)

    async def authorized(self, request: Request) -> bool:
        return self.refusal(request) is None

    def secret_of(self, access_key: str) -> str | None:
        """The secret of the sandbox key whose access key this is (every key compared)."""
        found = None
        for key in self.state.api_keys:
            access, colon, secret = key.partition(":")
            if not colon:
                access = secret = key
            if secrets.compare_digest(access.encode(), access_key.encode()):
                found = secret
        return found

    def refusal(self, request: Request) -> Response | None:
        """Kling's 401 for the request's token, or None when the token is good."""
        header = request.headers.get("authorization", "")
        if not header.strip():
            return self._refuse(1001, "Authorization is empty")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme != "Bearer" or not token:
            return self._refuse(1002, "Authorization is invalid")
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return self._refuse(1002, "Authorization is invalid")
        issuer = claims.get("iss")
        secret = self.secret_of(issuer) if isinstance(issuer, str) else None
        if secret is None:
            return self._refuse(1000, "Authentication failed")
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The HMAC key is")
                jwt.decode(
                    token,
                    secret,
                    algorithms=["HS256"],
                    issuer=issuer,
                    options={"require": ["iss", "exp", "nbf"]},
                )
        except jwt.InvalidSignatureError:
            return self._refuse(1000, "Authentication failed")
        except jwt.ExpiredSignatureError:
            return self._refuse(1004, "Token has expired")
        except jwt.ImmatureSignatureError:
            return self._refuse(1003, "Token is not yet valid")
        except jwt.InvalidTokenError:
            return self._refuse(1002, "Authorization is invalid")
        self.state.remember(self.tokens, token, None, 1000)
        return None

    def _refuse(self, code: int, message: str) -> Response:
        self.refusals[code] += 1
        return _refused(code, message)

    async def create(self, request: Request) -> Response:
        state = self.state
        try:
            body = await request.json()
        except ValueError:
            return _kling(400, 1200, "request body is not valid JSON")
        if not isinstance(body, dict):
            return _kling(400, 1200, "request body must be a JSON object")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return _invalid("prompt is required")
        if len(prompt) > MAX_PROMPT:
            return _invalid(f"prompt must not exceed {MAX_PROMPT} characters")
        model = body.get("model_name", "kling-v1")
        if model not in MODELS:
            return _invalid(f"model_name value '{model}' is invalid")
        count = body.get("n", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_N:
            return _invalid(f"n must be an integer in [1, {MAX_N}]")
        ratio = body.get("aspect_ratio", "16:9")
        if ratio not in RATIOS or (ratio == "21:9" and model == "kling-v1"):
            return _invalid(f"aspect_ratio value '{ratio}' is invalid for {model}")
        image = body.get("image")
        reference = body.get("image_reference")
        if image is not None and (not isinstance(image, str) or not image):
            return _invalid("image must be a URL or a Base64 string")
        if image and body.get("negative_prompt"):
            return _invalid("negative_prompt is not supported with image")
        if reference is not None and (
            not image or model != "kling-v1-5" or reference not in ("subject", "face")
        ):
            return _invalid(f"image_reference value '{reference}' is invalid")
        if image and model == "kling-v1-5" and reference is None:
            return _invalid("image_reference is required when image is set for kling-v1-5")
        for field in ("image_fidelity", "human_fidelity"):
            if field in body and not _fraction(body[field]):
                return _invalid(f"{field} must be in [0, 1]")
        if image:
            state.remember(state.references, prompt, [len(image)], 50_000)
        directive = parse_directive(prompt)
        if directive == "error500":
            return _kling(500, 5000, "Internal server error (sandbox)")
        if directive == "submit429" and state.throttle_once(prompt):
            return _kling(429, 1302, "API request rate limit exceeded")
        size = "16:9" if ratio == "21:9" else ratio
        job_id = state.accept(prompt, size, directive, count)
        if directive == "slowsubmit":
            await anyio.sleep(SLOW_SECONDS)
        now_ms = int(time.time() * 1000)
        return _kling(
            200,
            0,
            "SUCCEED",
            {
                "task_id": job_id,
                "task_status": "submitted",
                "task_info": {},
                "created_at": now_ms,
                "updated_at": now_ms,
            },
        )

    async def list_tasks(self, request: Request) -> Response:
        for name in ("pageNum", "pageSize"):
            value = request.query_params.get(name, "1")
            if not value.isdigit() or not 1 <= int(value) <= (1000 if name == "pageNum" else 500):
                return _invalid(f"{name} value '{value}' is invalid")
        return _kling(200, 0, "SUCCEED", [])

    async def query(self, request: Request) -> Response:
        state = self.state
        job_id = request.path_params["task_id"]
        parsed = parse_job_id(job_id)
        if parsed is None:
            return _kling(404, 1203, "task not found")
        state.polls += 1
        polled_at = time.time()
        state.record_poll(job_id, polled_at)
        started_ms, _size, directive = parsed
        if directive == "slowpoll":
            await anyio.sleep(SLOW_SECONDS)
        elif directive == "garbage":
            broken = '{"code": 0, "data": {"task_status": "succ'
            return Response(broken, media_type="application/json")
        elif directive == "poll429":
            return _kling(429, 1302, "API request rate limit exceeded")
        data: dict[str, Any] = {
            "task_id": job_id,
            "task_status": "submitted",
            "task_status_msg": "",
            "task_info": {},
            "created_at": started_ms,
            # When the task last changed (not when it was asked about): as Kling's.
            "updated_at": started_ms,
        }
        elapsed = polled_at - started_ms / 1000
        if directive == "status7":
            data["task_status"] = "thinking"
        elif elapsed < state.latency * 0.1:
            pass
        elif directive == "timeout" or elapsed < state.latency:
            data["task_status"] = "processing"
            data["updated_at"] = started_ms + int(state.latency * 100)
        elif directive == "fail":
            data.update(task_status="failed", task_status_msg=RISK_CONTROL)
            data["updated_at"] = started_ms + int(state.latency * 1000)
        else:
            data["updated_at"] = started_ms + int(state.latency * 1000)
            made = delivered(job_count(job_id), directive)
            data.update(
                task_status="succeed",
                task_result={
                    "images": [
                        {"index": index, "url": result_url(request, job_id, index)}
                        for index in range(made)
                    ]
                },
                final_unit_deduction=str(made * UNITS_PER_PICTURE),
            )
            if job_id not in state.first_done:
                state.remember(state.first_done, job_id, polled_at, 100_000)
        return _kling(200, 0, "SUCCEED", data)
