"""The reads clients repeat most, answered in front of FastAPI, without the ORM.

A client waiting on a task polls ``GET /user/ai/tasks/{taskNo}`` (the spec's way), and a
console polls its balance. Through the router, dependency solving, response validation and
an ORM session, one such read cost about 2 ms of CPU, most of it in those layers rather
than in the two indexed reads it makes. Here it is the same work, in plain ASGI, behind only
the request-id and edge-guard layers (:class:`shengtu.app.ShengtuApp`): the same
authentication and rate limits (:func:`shengtu.api.deps.authorize`), the same statements'
rows turned into the same response models, and the same error envelopes
(:func:`shengtu.api.errors.failure_response`). The FastAPI routes stay: they document the
API and are the reference; ``tests/test_hot_reads.py`` compares the answers byte for byte.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel
from sqlalchemy import bindparam, select
from starlette.types import ASGIApp, Receive, Scope, Send

from shengtu.accounts.service import Principal
from shengtu.api.deps import authorize
from shengtu.api.envelope import Envelope
from shengtu.api.errors import failure_response
from shengtu.context import AppContext
from shengtu.errors import NotFound
from shengtu.points.models import PointsAccount
from shengtu.points.schemas import BalanceOut
from shengtu.tasks.models import AiTask
from shengtu.tasks.schemas import TASK_ROW_COLUMNS, TaskDetail, TaskRow, task_detail
from shengtu.timefmt import fmt

TASKS_PREFIX = "/user/ai/tasks/"
BALANCE_PATH = "/user/points/consumption/balance"

_TASK = select(*TASK_ROW_COLUMNS).where(
    AiTask.task_no == bindparam("task_no"), AiTask.user_id == bindparam("user_id")
)
_BALANCE = select(PointsAccount.user_id, PointsAccount.balance, PointsAccount.expire_time).where(
    PointsAccount.user_id == bindparam("user_id")
)
_JSON_HEADERS = (b"content-type", b"application/json")

Read = Callable[[AppContext, Principal, str], Awaitable[BaseModel]]


async def task_read(ctx: AppContext, principal: Principal, task_no: str) -> BaseModel:
    row = await ctx.db.first(_TASK, {"task_no": task_no, "user_id": principal.user_id})
    if row is None:
        raise NotFound(f"任务 {task_no[:40]} 不存在")
    return Envelope[TaskDetail](data=task_detail(TaskRow._make(row), ctx.settings.timezone))


async def balance_read(ctx: AppContext, principal: Principal, _: str) -> BaseModel:
    row = await ctx.db.first(_BALANCE, {"user_id": principal.user_id})
    if row is None:
        raise NotFound("积分账户不存在")
    user_id, balance, expire_time = row
    out = BalanceOut(
        userId=user_id, balance=balance, expireTime=fmt(expire_time, ctx.settings.timezone)
    )
    return Envelope[BalanceOut](data=out)


def route(method: str, path: str) -> tuple[Read, str] | None:
    """The read this request is, with its path argument; None for everything else."""
    if method != "GET":
        return None
    if path.startswith(TASKS_PREFIX):
        task_no = path[len(TASKS_PREFIX) :]
        # "list" and deeper paths are other routes; an empty number matches no route.
        if task_no and task_no != "list" and "/" not in task_no:
            return task_read, task_no
        return None
    if path == BALANCE_PATH:
        return balance_read, ""
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
        try:
            principal = await authorize(self.ctx, scope["headers"])
            answer = await read(self.ctx, principal, argument)
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
