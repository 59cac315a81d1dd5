"""A task's deadline, kept by every step: each call to the outside ends at it, and the
step as a whole a little after it (the backstop)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from datetime import datetime

from shengtu.channels.pool import Route
from shengtu.config import Settings
from shengtu.db import utcnow
from shengtu.logs import get_logger
from shengtu.models.tasks import AiTask

log = get_logger("shengtu.worker")

# Every call a step makes to the outside (the upstream, a download) ends at its task's
# deadline. The step as a whole gets this much more, for its own work (the decoder's
# queue waits up to 30 s) before it is cut too: a step must never hang while the
# heartbeat keeps its lease alive.
STEP_OVERRUN_SECONDS = 30.0
# The whole step's bound, while it runs; held off once the step writes its outcome.
_STEP_BOUND: contextvars.ContextVar[asyncio.Timeout | None] = contextvars.ContextVar(
    "step_bound", default=None
)

# A submit in flight: (route, started, clock). The upstream may have accepted it.
Submitting = tuple[Route | None, datetime, float]


class Overran(Exception):
    """A step still waiting at its task's deadline. ``submit``: the submit that was in
    flight ((route, started, clock)): the upstream may have accepted it."""

    def __init__(self, message: str, submit: Submitting | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.submit = submit


def seconds_left(task: AiTask) -> float:
    return (task.deadline_at - utcnow()).total_seconds()


def hold_off_step_bound() -> None:
    """The step is writing its outcome: not cut in the middle of that write (a picture
    stored and its task's completion committed, but the step thinking it failed)."""
    bound = _STEP_BOUND.get()
    if bound is not None and not bound.expired():
        bound.reschedule(None)


def deadline_reason(task: AiTask, settings: Settings) -> str:
    reason = f"任务超时:上游在 {int(settings.task_deadline)} 秒内未完成"
    if task.last_error:
        reason += f"(最近一次错误:{task.last_error})"
    return reason


def download_overran(what: str, settings: Settings) -> Overran:
    return Overran(f"任务超时:{what}在任务时限({int(settings.task_deadline)} 秒)内未能下载完成")


@contextlib.asynccontextmanager
async def step_bound(task: AiTask, settings: Settings) -> AsyncIterator[None]:
    """The step's backstop: cut at the deadline plus STEP_OVERRUN_SECONDS."""
    # A submit may run its own timeout past the deadline (by_deadline's at_least).
    backstop = max(0.0, seconds_left(task)) + settings.upstream_timeout
    try:
        async with asyncio.timeout(backstop + STEP_OVERRUN_SECONDS) as bound:
            token = _STEP_BOUND.set(bound)
            try:
                yield
            finally:
                _STEP_BOUND.reset(token)
    except TimeoutError as exc:
        if not bound.expired():
            raise
        log.error("step_hung", status=task.status)
        raise Overran(deadline_reason(task, settings)) from exc


@contextlib.asynccontextmanager
async def by_deadline(
    task: AiTask,
    settings: Settings,
    submit: Submitting | None = None,
    at_least: float = 0.0,
) -> AsyncIterator[None]:
    """A call to the upstream, ended at the task's deadline (Overran), or after
    ``at_least`` seconds if that is later."""
    try:
        async with asyncio.timeout(max(at_least, seconds_left(task))) as bound:
            yield
    except TimeoutError as exc:
        if not bound.expired():
            raise
        if submit is not None:
            raise Overran(
                f"任务超时:提交上游的请求在任务时限({int(settings.task_deadline)} 秒)"
                "内未得到回答,无法确认上游是否已接受任务;为避免重复生成,任务不再重试",
                submit,
            ) from exc
        raise Overran(deadline_reason(task, settings)) from exc
