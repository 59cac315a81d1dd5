"""The DashScope (通义万相) double: image synthesis tasks created at
``/api/v1/services/aigc/text2image/image-synthesis`` and ``.../image2image/image-synthesis``,
polled at ``/api/v1/tasks/{task_id}``, cancelled at ``/api/v1/tasks/{task_id}/cancel``, a
``Bearer`` key (else 401 ``InvalidApiKey``), errors as ``{"code", "message", "request_id"}``.

As DashScope does, it refuses a create without ``X-DashScope-Async: enable`` (403
``AccessDenied``, "current user api does not support synchronous calls"), makes
``parameters.n`` pictures (1 to MAX_N; 4 when a text-to-image create leaves it out, 1 for
an edit), takes ``size`` as ``W*H`` with each side in SIDES (wan2.2 and earlier) and draws
it at the nearest aspect ratio the sandbox knows (an edit's picture at 1:1: DashScope's
follows the input picture), and cancels a task only while it is ``PENDING`` (else 400
``UnsupportedOperation``). An unknown task id answers 200 ``UNKNOWN``, as an expired one
does. A task is ``PENDING`` for the first tenth of the latency, then ``RUNNING``.

The sandbox words: ``fail`` ends the task ``FAILED`` with ``DataInspectionFailed`` (the
picture made broke the content rules); ``fewer`` makes one picture fewer, whose result
entry is a ``{"code": "DataInspectionFailed", "message"}`` (``task_metrics`` counts it
``FAILED``, ``usage.image_count`` leaves it out); ``timeout`` keeps it ``RUNNING``;
``error500`` answers the create 500 ``InternalError``; ``submit429`` answers the first
create 429 ``Throttling.RateQuota``; ``slowsubmit`` answers a made task late; ``poll429``,
``slowpoll``, ``garbage`` (cut-off JSON) and ``status7`` (``task_status`` ``SUSPENDED``)
spoil polls; the result-URL words act on the shared results route.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shengtu.providers.sandbox.common import (
    SIZES,
    SLOW_SECONDS,
    Double,
    delivered,
    job_count,
    parse_directive,
    parse_job_id,
    result_urls,
)

MAX_N = 4
# Each side of ``size`` (wan2.2-t2i-*, wanx2.1-t2i-*): 512 to 1440 pixels.
SIDES = (512, 1440)
DEFAULT_SIZE = "1024*1024"
MODERATED = "Output data may contain inappropriate content."
NOT_PENDING = "Failed to cancel the task, please confirm if the task is in PENDING status."
FUNCTIONS = frozenset(
    {
        "stylization_all",
        "stylization_local",
        "description_edit",
        "description_edit_with_mask",
        "remove_watermark",
        "expand",
        "super_resolution",
        "colorization",
        "doodle",
        "control_cartoon_feature",
    }
)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "request_id": str(uuid.uuid4())}, status_code=status
    )


def _invalid(message: str) -> JSONResponse:
    return _error(400, "InvalidParameter", message)


def _clock(seconds: float) -> str:
    """DashScope's time format, ``2025-01-08 16:03:59.840``."""
    whole = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    return f"{whole}.{int(seconds * 1000) % 1000:03d}"


def _ratio(size: str) -> str | None:
    """The sandbox's aspect ratio nearest ``W*H``, or None when DashScope would refuse it."""
    width, _, height = size.partition("*")
    if not (width.isdigit() and height.isdigit()):
        return None
    w, h = int(width), int(height)
    if not all(SIDES[0] <= side <= SIDES[1] for side in (w, h)):
        return None

    def off(ratio: str) -> float:
        rw, rh = SIZES[ratio]
        return abs(math.log((w / h) / (rw / rh)))

    return min((r for r in SIZES if r != "auto"), key=off)


class DashScopeDouble(Double):
    def routes(self) -> list[Route]:
        return [
            self.route(
                "/api/v1/services/aigc/text2image/image-synthesis", self.text_to_image, "POST"
            ),
            self.route(
                "/api/v1/services/aigc/image2image/image-synthesis", self.image_to_image, "POST"
            ),
            self.route("/api/v1/tasks/{task_id}", self.get_task, "GET"),
            self.route("/api/v1/tasks/{task_id}/cancel", self.cancel_task, "POST"),
        ]

    def refused(self) -> Response:
        return _error(401, "InvalidApiKey", "Invalid API-key provided.")

    async def text_to_image(self, request: Request) -> Response:
        return await self.create(request, edit=False)

    async def image_to_image(self, request: Request) -> Response:
        return await self.create(request, edit=True)

    async def create(self, request: Request, *, edit: bool) -> Response:
        state = self.state
        if request.headers.get("x-dashscope-async", "").lower() != "enable":
            return _error(
                403, "AccessDenied", "current user api does not support synchronous calls"
            )
        try:
            body = await request.json()
        except ValueError:
            return _invalid("The request body is not a valid JSON.")
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("model"), str)
            or not body["model"]
        ):
            return _invalid("Model not exist.")
        model_input = body.get("input")
        parameters = body.get("parameters") or {}
        if not isinstance(model_input, dict) or not isinstance(parameters, dict):
            return _invalid("input and parameters must be objects")
        prompt = model_input.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return _invalid("Field required: input.prompt")
        count = parameters.get("n", 1 if edit else MAX_N)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_N:
            return _invalid(f"n should be an integer in [1, {MAX_N}]")
        size = "1:1"
        if not edit:
            asked = parameters.get("size", DEFAULT_SIZE)
            found = _ratio(asked) if isinstance(asked, str) else None
            if found is None:
                return _invalid(
                    f"The size is not match: width and height must be in [{SIDES[0]}, {SIDES[1]}]"
                )
            size = found
        else:
            images = self.references(model_input)
            if isinstance(images, Response):
                return images
            state.remember(state.references, prompt, [len(u) for u in images], 50_000)
        directive = parse_directive(prompt)
        if directive == "error500":
            return _error(
                500,
                "InternalError",
                "An internal error has occured, please try again later or contact service support.",
            )
        if directive == "submit429" and state.throttle_once(prompt):
            return _error(
                429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later."
            )
        job_id = state.accept(prompt, size, directive, count)
        if directive == "slowsubmit":
            await anyio.sleep(SLOW_SECONDS)
        return JSONResponse(
            {
                "output": {"task_status": "PENDING", "task_id": job_id},
                "request_id": str(uuid.uuid4()),
            }
        )

    def references(self, model_input: dict[str, Any]) -> list[str] | Response:
        """An edit's input pictures: ``base_image_url`` with a ``function`` (wanx2.1-imageedit)
        or ``images`` (wan2.5-i2i-preview)."""
        images = model_input.get("images")
        if images is not None:
            if (
                not isinstance(images, list)
                or not 1 <= len(images) <= 3
                or not all(isinstance(u, str) and u for u in images)
            ):
                return _invalid("input.images must be a list of 1 to 3 image URLs")
            return images
        function = model_input.get("function")
        if function not in FUNCTIONS:
            return _invalid(f"input.function is invalid: {str(function)[:40]}")
        base = model_input.get("base_image_url")
        if not isinstance(base, str) or not base:
            return _invalid("Field required: input.base_image_url")
        return [base]

    def task(self, request: Request, job_id: str) -> dict[str, Any]:
        """A task's answer, from its id alone (and whether it was canceled)."""
        state = self.state
        parsed = parse_job_id(job_id)
        assert parsed is not None
        started_ms, _size, directive = parsed
        started = started_ms / 1000
        count = job_count(job_id)
        output: dict[str, Any] = {"task_id": job_id, "submit_time": _clock(started)}
        body: dict[str, Any] = {"request_id": str(uuid.uuid4()), "output": output}
        elapsed = time.time() - started
        queued = state.latency * 0.1
        if job_id in state.canceled:
            output.update(task_status="CANCELED", end_time=_clock(started + queued / 2))
            return body
        if elapsed < queued:
            output["task_status"] = "PENDING"
            return body
        output["scheduled_time"] = _clock(started + queued)
        if directive == "timeout" or elapsed < state.latency:
            output.update(
                task_status="RUNNING",
                task_metrics={"TOTAL": count, "SUCCEEDED": 0, "FAILED": 0},
            )
            return body
        output["end_time"] = _clock(started + state.latency)
        if directive == "fail":
            output.update(
                task_status="FAILED",
                code="DataInspectionFailed",
                message=MODERATED,
                task_metrics={"TOTAL": count, "SUCCEEDED": 0, "FAILED": count},
            )
            return body
        urls = result_urls(request, job_id)
        prompt = state.prompts.get(job_id)
        results: list[dict[str, Any]] = [
            {"orig_prompt": prompt, "url": url} if prompt else {"url": url} for url in urls
        ]
        made = delivered(count, directive)
        results += [{"code": "DataInspectionFailed", "message": MODERATED}] * (count - made)
        output.update(
            task_status="SUCCEEDED",
            results=results,
            task_metrics={"TOTAL": count, "SUCCEEDED": made, "FAILED": count - made},
        )
        body["usage"] = {"image_count": made}
        return body

    async def get_task(self, request: Request) -> Response:
        state = self.state
        job_id = request.path_params["task_id"]
        parsed = parse_job_id(job_id)
        if parsed is None:
            return JSONResponse(
                {
                    "request_id": str(uuid.uuid4()),
                    "output": {"task_id": job_id, "task_status": "UNKNOWN"},
                }
            )
        state.polls += 1
        polled_at = time.time()
        state.record_poll(job_id, polled_at)
        directive = parsed[2]
        if directive == "slowpoll":
            await anyio.sleep(SLOW_SECONDS)
        elif directive == "garbage":
            return Response(
                '{"request_id": "x", "output": {"task_status": "SUCC', media_type="application/json"
            )
        elif directive == "status7":
            return JSONResponse(
                {
                    "request_id": str(uuid.uuid4()),
                    "output": {"task_id": job_id, "task_status": "SUSPENDED"},
                }
            )
        elif directive == "poll429":
            return _error(
                429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later."
            )
        body = self.task(request, job_id)
        if body["output"]["task_status"] == "SUCCEEDED" and job_id not in state.first_done:
            state.remember(state.first_done, job_id, polled_at, 100_000)
        return JSONResponse(body)

    async def cancel_task(self, request: Request) -> Response:
        job_id = request.path_params["task_id"]
        if parse_job_id(job_id) is None:
            return _error(400, "UnsupportedOperation", NOT_PENDING)
        if self.task(request, job_id)["output"]["task_status"] != "PENDING":
            return _error(400, "UnsupportedOperation", NOT_PENDING)
        self.state.canceled.add(job_id)
        return JSONResponse({"request_id": str(uuid.uuid4())})
