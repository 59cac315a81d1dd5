"""The Replicate double: predictions (``/v1/models/{owner}/{name}/predictions``,
``/v1/predictions/{id}``, its ``cancel``) and ``/v1/account``, a ``Bearer`` key. ``fail``
ends the prediction ``failed`` with an NSFW error; ``garbage``, ``status7``, ``poll429``
and ``slowpoll`` spoil polls; ``slowsubmit`` answers a made prediction late. It makes
``input.num_outputs`` pictures (1 to MAX_OUTPUTS as flux-schnell, else a 422), one fewer
under ``fewer``, and a finished prediction has ``metrics`` (``image_count``,
``predict_time``, ``total_time``)."""

from __future__ import annotations

import time
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
    retry_after_headers,
)

# The pictures one prediction may make (``input.num_outputs``), as flux-schnell's.
MAX_OUTPUTS = 4


def _replicate_error(status: int, detail: str, retry_after: int | None = None) -> JSONResponse:
    return JSONResponse(
        {"title": detail, "detail": detail, "status": status},
        status_code=status,
        headers=retry_after_headers(retry_after),
    )


class ReplicateDouble(Double):
    def routes(self) -> list[Route]:
        return [
            self.route("/v1/models/{owner}/{name}/predictions", self.create_prediction, "POST"),
            self.route("/v1/predictions/{job_id}", self.get_prediction, "GET"),
            self.route("/v1/predictions/{job_id}/cancel", self.cancel_prediction, "POST"),
            self.route("/v1/account", self.replicate_account, "GET"),
        ]

    def refused(self) -> Response:
        return _replicate_error(401, "Unauthenticated")

    def prediction(self, request: Request, job_id: str) -> dict[str, Any]:
        """A prediction's state, from its id alone (and whether it was canceled)."""
        state = self.state
        parsed = parse_job_id(job_id)
        assert parsed is not None
        started_ms, _size, directive = parsed
        base = str(request.base_url).rstrip("/")
        body: dict[str, Any] = {
            "id": job_id,
            "status": "starting",
            "output": None,
            "error": None,
            "urls": {
                "get": f"{base}/v1/predictions/{job_id}",
                "cancel": f"{base}/v1/predictions/{job_id}/cancel",
            },
        }
        elapsed = time.time() - started_ms / 1000
        if job_id in state.canceled:
            body["status"] = "canceled"
        elif elapsed < state.latency * 0.1:
            pass
        elif directive == "timeout" or elapsed < state.latency:
            body["status"] = "processing"
        elif directive == "fail":
            body.update(
                status="failed",
                error="NSFW content detected (sandbox)",
                metrics={"predict_time": self.predict_time(), "total_time": state.latency},
            )
        else:
            body.update(
                status="succeeded",
                output=result_urls(request, job_id),
                metrics={
                    "image_count": delivered(job_count(job_id), directive),
                    "predict_time": self.predict_time(),
                    "total_time": state.latency,
                },
            )
        return body

    def predict_time(self) -> float:
        """The seconds the model ran, as its ``metrics`` say: the latency less a queue's."""
        return round(self.state.latency * 0.9, 3)

    async def create_prediction(self, request: Request) -> Response:
        state = self.state
        try:
            body = await request.json()
        except ValueError:
            return _replicate_error(400, "Invalid JSON")
        model_input = body.get("input") if isinstance(body, dict) else None
        if not isinstance(model_input, dict) or not isinstance(model_input.get("prompt"), str):
            return _replicate_error(422, "input.prompt is required")
        prompt = model_input["prompt"]
        size = str(model_input.get("aspect_ratio") or "1:1")
        if size not in SIZES:
            return _replicate_error(422, f"input.aspect_ratio: invalid value {size}")
        count = model_input.get("num_outputs", 1)
        if not isinstance(count, int) or isinstance(count, bool):
            return _replicate_error(422, "input.num_outputs: Invalid type. Expected: integer")
        if not 1 <= count <= MAX_OUTPUTS:
            bound = (
                "greater than or equal to 1"
                if count < 1
                else f"less than or equal to {MAX_OUTPUTS}"
            )
            return _replicate_error(422, f"input.num_outputs: Must be {bound}")
        images = [v for k, v in model_input.items() if "image" in k and isinstance(v, str)]
        if images:
            state.remember(state.references, prompt, [len(v) for v in images], 50_000)
        directive = parse_directive(prompt)
        if directive == "error500":
            return _replicate_error(500, "Internal server error (sandbox)")
        if directive == "submit429" and state.throttle_once(prompt):
            return _replicate_error(429, "Request was throttled", retry_after=1)
        job_id = state.accept(prompt, size, directive, count)
        if directive == "slowsubmit":
            await anyio.sleep(SLOW_SECONDS)
        return JSONResponse(self.prediction(request, job_id), status_code=201)

    async def get_prediction(self, request: Request) -> Response:
        state = self.state
        job_id = request.path_params["job_id"]
        parsed = parse_job_id(job_id)
        if parsed is None:
            return _replicate_error(404, "Prediction not found")
        state.polls += 1
        state.record_poll(job_id, time.time())
        directive = parsed[2]
        if directive == "slowpoll":
            await anyio.sleep(SLOW_SECONDS)
        elif directive == "garbage":
            return Response('{"id": "x", "status": ', media_type="application/json")
        elif directive == "status7":
            return JSONResponse({"id": job_id, "status": "thinking", "output": None})
        elif directive == "poll429":
            return _replicate_error(429, "Request was throttled", retry_after=1)
        return JSONResponse(self.prediction(request, job_id))

    async def cancel_prediction(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if parse_job_id(job_id) is None:
            return _replicate_error(404, "Prediction not found")
        if self.prediction(request, job_id)["status"] in ("starting", "processing"):
            self.state.canceled.add(job_id)
        return JSONResponse(self.prediction(request, job_id))

    async def replicate_account(self, request: Request) -> Response:
        return JSONResponse({"type": "user", "username": "sandbox"})
