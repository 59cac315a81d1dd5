"""The BFL (FLUX) double, mounted under ``/bfl`` (its ``/v1/{model}`` would take every other
protocol's ``/v1/...``): ``POST /v1/{model}`` creates, ``GET /v1/get_result?id=`` polls,
``GET /v1/credits`` tells the balance; the key in ``x-key``, a wrong or missing one refused
with 403 ``Not authenticated - Invalid Authentication`` as BFL's.

It takes the FLUX.1 models: ``flux-pro-1.1``, ``flux-dev`` and ``flux-pro`` sized by
``width``/``height`` (multiples of 32, 256–1440, else a 422 in FastAPI's shape),
``flux-pro-1.1-ultra`` and the ``flux-kontext`` ones by ``aspect_ratio`` (21:9 to 9:21), and
draws the nearest of the sandbox's ratios. A create answers ``{id, polling_url, cost}``, the
polling URL on itself under its prefix. One picture a request, as BFL's (``fewer`` too).
A key holds at most ACTIVE_TASKS jobs not yet ended; the next create answers 429. A key
with ``nocredit`` in it is an account out of credits: every create answers 402 and
``/v1/credits`` says 0.

The words, its way: ``fail`` ends the job ``Content Moderated``; ``[sandbox:moderated]``
(this double's own word) ``Request Moderated``; ``error500`` a plain 500 at create;
``submit429`` one 429 (the active-task limit) before the create is taken; ``slowsubmit``
makes the job and answers late; ``timeout`` stays ``Pending``; ``slowpoll``, ``garbage``
(broken JSON), ``status7`` (a status BFL does not have) and ``poll429`` spoil polls. The
picture's URL is the shared results route, where the URL words happen; ``result404`` is
what a signed URL answers once its 10 minutes are over.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from typing import Any

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
    result_url,
    retry_after_headers,
)

# The models it serves: sized by aspect ratio (its default) or in pixels (None), and
# their credits a picture (BFL's prices, a credit a cent).
MODELS: dict[str, tuple[str | None, float]] = {
    "flux-pro-1.1": (None, 4),
    "flux-dev": (None, 2.5),
    "flux-pro": (None, 5),
    "flux-pro-1.1-ultra": ("16:9", 6),
    "flux-kontext-pro": ("1:1", 4),
    "flux-kontext-max": ("1:1", 8),
}
# A key's jobs at once, as BFL's limit; a create beyond it answers 429.
ACTIVE_TASKS = 24
# How long a job that never finishes (``timeout``) counts as active.
TIMEOUT_ACTIVE_SECONDS = 60.0
MODERATED_WORD = "[sandbox:moderated]"
# The id of a job that ends ``Request Moderated``: this before the sandbox job's id.
MODERATED_PREFIX = "rm-"
PIXEL_DEFAULT = (1024, 768)


def _invalid(where: str, message: str, kind: str = "value_error") -> JSONResponse:
    """FastAPI's 422, as BFL's API answers a request it cannot take."""
    return JSONResponse(
        {"detail": [{"type": kind, "loc": ["body", where], "msg": message}]}, status_code=422
    )


def _refusal(status: int, detail: str, retry_after: int | None = None) -> JSONResponse:
    return JSONResponse(
        {"detail": detail}, status_code=status, headers=retry_after_headers(retry_after)
    )


def _nearest(width: float, height: float) -> str:
    """The sandbox's ratio nearest ``width``:``height``."""
    wanted = math.log(width / height)
    return min(
        (r for r in SIZES if r != "auto"),
        key=lambda r: abs(math.log(SIZES[r][0] / SIZES[r][1]) - wanted),
    )


def _pixels(body: dict[str, Any]) -> str | JSONResponse:
    """The ratio to draw for a model sized in pixels, or its 422."""
    sides = []
    for field, default in zip(("width", "height"), PIXEL_DEFAULT, strict=True):
        value = body.get(field, default)
        if not isinstance(value, int) or isinstance(value, bool):
            return _invalid(field, "Input should be a valid integer", "int_type")
        if not 256 <= value <= 1440 or value % 32:
            return _invalid(field, f"{field} must be a multiple of 32 between 256 and 1440")
        sides.append(value)
    return _nearest(sides[0], sides[1])


def _ratio(body: dict[str, Any], default: str) -> str | JSONResponse:
    """The ratio to draw for a model sized by ``aspect_ratio``, or its 422."""
    value = body.get("aspect_ratio") or default
    left, _, right = str(value).partition(":")
    if not (left.isdigit() and right.isdigit() and int(left) and int(right)):
        return _invalid("aspect_ratio", "Aspect ratio must be in the format W:H")
    if not 9 / 21 - 1e-9 <= int(left) / int(right) <= 21 / 9 + 1e-9:
        return _invalid("aspect_ratio", "Aspect ratio must be between 21:9 and 9:21")
    return _nearest(int(left), int(right))


class BflDouble(Double):
    prefix = "/bfl"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # key → when each of its jobs ends, oldest first.
        self._active: dict[str, deque[float]] = {}

    def routes(self) -> list[Route]:
        return [
            self.route("/v1/get_result", self.get_result, "GET"),
            self.route("/v1/credits", self.credits, "GET"),
            self.route("/v1/{model}", self.create, "POST"),
        ]

    def key(self, request: Request) -> str:
        return request.headers.get("x-key", "")

    def refused(self) -> Response:
        return _refusal(403, "Not authenticated - Invalid Authentication")

    def _busy(self, key: str, now: float) -> bool:
        ends = self._active.setdefault(key, deque())
        while ends and ends[0] <= now:
            ends.popleft()
        return len(ends) >= ACTIVE_TASKS

    def _started(self, key: str, ends_at: float) -> None:
        ends = self._active.setdefault(key, deque())
        ends.append(ends_at)
        # Kept in order of ending: a ``timeout`` job ends later than those after it.
        if len(ends) > 1 and ends[-2] > ends_at:
            self._active[key] = deque(sorted(ends))

    async def create(self, request: Request) -> Response:
        state = self.state
        model = request.path_params["model"]
        if model not in MODELS:
            return _refusal(404, "Not Found")
        try:
            body = await request.json()
        except ValueError:
            return _invalid("body", "JSON decode error", "json_invalid")
        if not isinstance(body, dict):
            return _invalid("body", "Input should be a valid dictionary", "dict_type")
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return _invalid("prompt", "Field required", "missing")
        ratio_default, cost = MODELS[model]
        size = _pixels(body) if ratio_default is None else _ratio(body, ratio_default)
        if isinstance(size, Response):
            return size
        tolerance = body.get("safety_tolerance", 2)
        if not isinstance(tolerance, int) or isinstance(tolerance, bool) or not 0 <= tolerance <= 6:
            return _invalid("safety_tolerance", "Input should be less than or equal to 6")
        if body.get("output_format", "jpeg") not in ("jpeg", "png", None):
            return _invalid("output_format", "Input should be 'jpeg' or 'png'", "enum")
        images = [
            v
            for k, v in body.items()
            if (k == "image_prompt" or k.startswith("input_image")) and isinstance(v, str) and v
        ]
        if images:
            state.remember(state.references, prompt, [len(v) for v in images], 50_000)
        key = self.key(request)
        if "nocredit" in key:
            return _refusal(402, "Insufficient credits. Please add credits to your account.")
        directive = parse_directive(prompt)
        if directive == "error500":
            return Response("Internal Server Error", status_code=500)
        now = time.time()
        active_limit = f"You have reached the limit of {ACTIVE_TASKS} active tasks"
        if directive == "submit429" and state.throttle_once(prompt):
            return _refusal(429, active_limit, retry_after=1)
        if self._busy(key, now):
            return _refusal(429, active_limit)
        job_id = state.accept(prompt, size, directive)
        lasts = TIMEOUT_ACTIVE_SECONDS if directive == "timeout" else state.latency
        self._started(key, now + lasts)
        if MODERATED_WORD in prompt:
            job_id = MODERATED_PREFIX + job_id
        if directive == "slowsubmit":
            await anyio.sleep(SLOW_SECONDS)
        base = str(request.base_url).rstrip("/") + self.prefix
        return JSONResponse(
            {"id": job_id, "polling_url": f"{base}/v1/get_result?id={job_id}", "cost": cost}
        )

    async def get_result(self, request: Request) -> Response:
        state = self.state
        bfl_id = request.query_params.get("id")
        if bfl_id is None:
            return JSONResponse(
                {"detail": [{"type": "missing", "loc": ["query", "id"], "msg": "Field required"}]},
                status_code=422,
            )
        job_id = bfl_id.removeprefix(MODERATED_PREFIX)
        parsed = parse_job_id(job_id)
        body: dict[str, Any] = {
            "id": bfl_id,
            "status": "Task not found",
            "result": None,
            "progress": None,
            "details": None,
            "preview": None,
        }
        if parsed is None:
            return JSONResponse(body)
        state.polls += 1
        polled_at = time.time()
        state.record_poll(job_id, polled_at)
        started_ms, _size, directive = parsed
        if directive == "slowpoll":
            await anyio.sleep(SLOW_SECONDS)
        elif directive == "garbage":
            return Response('{"id": "x", "status": "Rea', media_type="application/json")
        elif directive == "status7":
            return JSONResponse({**body, "status": "Thinking"})
        elif directive == "poll429":
            return _refusal(429, "Too many requests", retry_after=1)
        elapsed = polled_at - started_ms / 1000
        if directive == "timeout" or elapsed < state.latency:
            fraction = elapsed / state.latency if state.latency else 1.0
            body.update(status="Pending", progress=round(min(0.99, max(0.0, fraction)), 2))
        elif bfl_id.startswith(MODERATED_PREFIX):
            body.update(status="Request Moderated", details={"Moderation Reasons": ["sandbox"]})
        elif directive == "fail":
            body.update(status="Content Moderated", details={"Moderation Reasons": ["sandbox"]})
        else:
            seed = int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big")
            body.update(
                status="Ready",
                result={
                    "sample": result_url(request, job_id),
                    "prompt": state.prompts.get(job_id, ""),
                    "seed": seed,
                    "start_time": started_ms / 1000,
                    "end_time": started_ms / 1000 + state.latency,
                    "duration": state.latency,
                },
            )
            if job_id not in state.first_done:
                state.remember(state.first_done, job_id, polled_at, 100_000)
        return JSONResponse(body)

    async def credits(self, request: Request) -> Response:
        return JSONResponse({"credits": 0 if "nocredit" in self.key(request) else 1000.0})
