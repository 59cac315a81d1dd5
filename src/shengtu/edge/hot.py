"""The reads clients repeat most, answered in front of FastAPI, without the ORM.

A client waiting on a task polls ``GET /user/ai/tasks/{taskNo}`` (the spec's way), and a
console polls its balance. Through the router, dependency solving, response validation and
an ORM session, one such read cost about 2 ms of CPU, most of it in those layers rather
than in the two indexed reads it makes. Here it is the same work, in plain ASGI, behind only
the request-id and edge-guard layers (:class:`shengtu.app.ShengtuApp`): the same
authentication and rate limits (:func:`shengtu.auth.deps.authorize_with`, which reads the
caller and the row asked for in one statement), the same response models, and the same error
envelopes (:func:`shengtu.api.errors.failure_response`). The FastAPI routes stay: they document the
API and are the reference; ``tests/edge/test_hot_reads.py`` compares the answers byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, bindparam
from starlette.types import ASGIApp, Receive, Scope, Send

from shengtu.api.envelope import Envelope
from shengtu.api.errors import failure_response
from shengtu.api.i18n import wants_english
from shengtu.api.middleware import ROUTE_KEY
from shengtu.auth.authenticator import NO_PARAMS, Joined
from shengtu.auth.deps import authorize_with
from shengtu.context import AppContext
from shengtu.models.accounts import User
from shengtu.models.points import PointsAccount
from shengtu.models.tasks import AiTask
from shengtu.points.schemas import BalanceOut, balance_out
from shengtu.points.service import account_not_found
from shengtu.tasks.schemas import TASK_ROW_COLUMNS, TaskDetail, TaskRow, task_detail
from shengtu.tasks.service import task_not_found

TASKS_PREFIX = "/user/ai/tasks/"
BALANCE_PATH = "/user/points/consumption/balance"

_JSON_HEADERS = (b"content-type", b"application/json")
# Subscripted once: each ``Envelope[X]`` is a cache lookup of ~1 µs.
_TASK_ENVELOPE = Envelope[TaskDetail]
_BALANCE_ENVELOPE = Envelope[BalanceOut]


@dataclass(frozen=True)
class Read:
    """The caller's row this read needs (read with the caller, in one statement), and the
    answer made of its values (all None when the caller has no such row), in English
    where the client asked for it (its last argument)."""

    joined: Joined
    answer: Callable[[AppContext, tuple[Any, ...], str, bool], BaseModel]
    argument: str | None = None  # the bind parameter the path's argument fills
    template: str = ""  # the route's path, as FastAPI's route declares it

    def params(self, argument: str) -> Mapping[str, Any]:
        return NO_PARAMS if self.argument is None else {self.argument: argument}


def _task_answer(ctx: AppContext, row: tuple[Any, ...], task_no: str, english: bool) -> BaseModel:
    if row[0] is None:
        raise task_not_found(task_no)
    return _TASK_ENVELOPE(data=task_detail(TaskRow._make(row), ctx.settings.timezone, english))


def _balance_answer(ctx: AppContext, row: tuple[Any, ...], _: str, __: bool) -> BaseModel:
    user_id, balance, expire_time = row
    if user_id is None:
        raise account_not_found()
    return _BALANCE_ENVELOPE(data=balance_out(user_id, balance, expire_time, ctx.settings.timezone))


TASK_READ = Read(
    Joined(
        TASK_ROW_COLUMNS,
        AiTask,
        and_(AiTask.user_id == User.id, AiTask.task_no == bindparam("task_no")),
    ),
    _task_answer,
    argument="task_no",
    template="/user/ai/tasks/{task_no}",
)
BALANCE_READ = Read(
    Joined(
        (PointsAccount.user_id, PointsAccount.balance, PointsAccount.expire_time),
        PointsAccount,
        PointsAccount.user_id == User.id,
    ),
    _balance_answer,
    template="/user/points/consumption/balance",
)


def route(method: str, path: str) -> tuple[Read, str] | None:
    """The read this request is, with its path argument; None for everything else."""
    if method != "GET":
        return None
    if path.startswith(TASKS_PREFIX):
        task_no = path[len(TASKS_PREFIX) :]
        # "list" and deeper paths are other routes; an empty number matches no route.
        if task_no and task_no != "list" and "/" not in task_no:
            return TASK_READ, task_no
        return None
    if path == BALANCE_PATH:
        return BALANCE_READ, ""
    return None


class HotReads:
    """Answers :func:`route`'s reads; passes every other request on to the app."""

    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = route(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        read, argument = found
        # For the metrics (api/middleware.route_label): FastAPI never sees this request.
        scope[ROUTE_KEY] = read.template
        try:
            _, row = await authorize_with(self.ctx, scope, read.joined, read.params(argument))
            answer = read.answer(self.ctx, row, argument, wants_english(scope))
        except Exception as exc:
            await failure_response(exc)(scope, receive, send)
            return
        body = answer.__pydantic_serializer__.to_json(answer)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), _JSON_HEADERS],
            }
        )
        await send({"type": "http.response.body", "body": body})
