from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field

from shengtu.api.i18n import english_reason
from shengtu.api.inputs import RequestBody
from shengtu.models.tasks import AiTask
from shengtu.timefmt import fmt

TaskType = Literal["text_to_image", "image_to_image"]
TaskStatus = Literal["created", "queued", "processing", "completed", "failed"]

_SNIPPET_LIMIT = 30
_SENTENCE_END = re.compile(r"[,\uff0c\u3002.!\uff01?\uff1f;\uff1b\n]")


class SubmitRequest(RequestBody):
    modelName: str = Field(min_length=1, max_length=64)
    prompt: str | None = None
    imageUrl: str | list[str] | None = None
    # An extension of the spec: where this task's webhook goes when it ends (signed with
    # the secret of POST /user/webhooks/callback-secret).
    callbackUrl: str | None = Field(default=None, min_length=1, max_length=2048)
    # Extensions of the spec: values for the model's choices (``size``, ``quality`` …)
    # and its extra fields, and how many pictures the one task asks for (the model's
    # ``parameters`` in GET /user/ai/models say what it offers; ``n`` is charged together).
    parameters: dict[str, Any] | None = None
    n: int = Field(default=1, ge=1)


class TaskLabels(BaseModel):
    implicit: bool
    visible: bool


class TaskDetail(BaseModel):
    taskNo: str
    modelName: str
    status: TaskStatus
    taskType: TaskType
    progress: int
    promptSnippet: str
    imageUrl: str | None
    resultUrl: str | None
    createTime: str
    completeTime: str | None
    errorMessage: str | None
    pointsCost: int
    # True once the picture was deleted at the end of its retention (its URL answers 410).
    resultExpired: bool = False
    # The picture an upstream delivered after the task had failed (and been refunded).
    lateResultUrl: str | None = None
    # The pictures asked for and delivered, every delivered picture's URL (the first is
    # resultUrl), the points given back (a failure: all; a completion with fewer pictures
    # than asked: the missing ones') and the values chosen for the model's parameters.
    pictures: int = 1
    delivered: int | None = None
    resultUrls: list[str] | None = None
    pointsRefunded: int = 0
    parameters: dict[str, Any] | None = None
    # The labels the stored pictures carry (GB 45438-2025): the implicit one in their
    # metadata, the visible one drawn on them; null until a picture is stored.
    labels: TaskLabels | None = None


def prompt_snippet(prompt: str) -> str:
    """The prompt up to its first sentence break (at most 30 characters), as the spec shows."""
    text = prompt.strip()
    m = _SENTENCE_END.search(text, 0, _SNIPPET_LIMIT + 1)
    cut = m.start() if m and m.start() > 0 else _SNIPPET_LIMIT
    return text if len(text) <= cut else text[:cut] + "..."


def image_url_field(urls: list[str]) -> str | None:
    """Echo the reference images the way the spec sends them: one URL, or a JSON array string."""
    if not urls:
        return None
    if len(urls) == 1:
        return urls[0]
    return json.dumps(urls, ensure_ascii=False)


class TaskRow(NamedTuple):
    """The columns a task's answer is made of, read without the ORM."""

    task_no: str
    model_name: str
    status: str
    task_type: str
    progress: int
    prompt: str
    image_urls: list[str] | None
    result_url: str | None
    created_at: datetime
    completed_at: datetime | None
    error_message: str | None
    points_cost: int
    result_expired_at: datetime | None
    late_result_url: str | None
    pictures: int
    delivered: int | None
    results: list[dict[str, str]] | None
    params: dict[str, Any] | None
    labels: dict[str, bool] | None


TASK_ROW_COLUMNS = tuple(getattr(AiTask, name) for name in TaskRow._fields)


def task_detail(task: AiTask | TaskRow, tz: str, english: bool = False) -> TaskDetail:
    """The task as the API shows it; with ``english``, its failure reason in English (a
    client that asked for it: :func:`shengtu.api.i18n.wants_english`)."""
    reason = task.error_message
    return TaskDetail(
        taskNo=task.task_no,
        modelName=task.model_name,
        status=task.status,
        taskType=task.task_type,
        progress=task.progress,
        promptSnippet=prompt_snippet(task.prompt),
        imageUrl=image_url_field(list(task.image_urls or [])),
        resultUrl=task.result_url,
        createTime=fmt(task.created_at, tz) or "",
        completeTime=fmt(task.completed_at, tz),
        errorMessage=english_reason(reason) if english and reason else reason,
        pointsCost=task.points_cost,
        resultExpired=task.result_expired_at is not None,
        lateResultUrl=task.late_result_url if task.result_expired_at is None else None,
        pictures=task.pictures,
        delivered=task.delivered,
        resultUrls=_result_urls(task),
        pointsRefunded=points_refunded(task),
        parameters=task.params,
        labels=TaskLabels(**task.labels) if task.labels else None,
    )


def in_english(detail: TaskDetail) -> TaskDetail:
    """``detail`` with its failure reason in English (one made before the language was known)."""
    if not detail.errorMessage:
        return detail
    return detail.model_copy(update={"errorMessage": english_reason(detail.errorMessage)})


def webhook_data(task: AiTask, tz: str) -> dict[str, Any]:
    """The task as its webhooks carry it: as the API shows it, and the failure reason in
    English beside the Chinese (``errorMessageEn``). A webhook answers no request, so no
    Accept-Language says which a receiver reads; both cost a few bytes, and a receiver
    picks the one it shows without a setting to keep per endpoint and per callbackUrl."""
    data = task_detail(task, tz).model_dump()
    data["errorMessageEn"] = english_reason(task.error_message) if task.error_message else None
    return data


def _result_urls(task: AiTask | TaskRow) -> list[str] | None:
    if task.results:
        return [r["url"] for r in task.results]
    return [task.result_url] if task.result_url else None


def points_refunded(task: AiTask | TaskRow) -> int:
    """What the task gave back: all of it when it failed, the missing pictures' share when
    it completed with fewer than it asked for."""
    if task.status == "failed":
        return task.points_cost
    if task.status == "completed" and task.delivered is not None:
        missing = max(0, (task.pictures or 1) - task.delivered)
        return task.points_cost // (task.pictures or 1) * missing
    return 0


def task_version(task: AiTask) -> str:
    """Which state of the task a client has seen: its last change, to the microsecond."""
    return task.updated_at.isoformat(timespec="microseconds")
