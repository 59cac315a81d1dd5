from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shengtu.api.envelope import Envelope, Page, PageNo, PageSize, ok
from shengtu.api.i18n import EnglishDep, english_reason
from shengtu.auth.deps import PrincipalDep
from shengtu.context import ContextDep
from shengtu.idempotency import service as idempotency
from shengtu.tasks import quote as quotes
from shengtu.tasks import service
from shengtu.tasks.quote import QuoteOut, QuoteRequest
from shengtu.tasks.schemas import SubmitRequest, TaskDetail, in_english, task_detail

router = APIRouter(tags=["tasks"])
# Longer than any submit takes: a key held longer was held by a process that died.
SUBMIT_LEASE_SECONDS = 120


IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="同一 Key 同一参数 24 小时内重试得到同一回答,不重复扣费",
    ),
]


@router.post("/user/ai/tasks/submit", response_model=Envelope[TaskDetail])
async def submit(
    body: SubmitRequest,
    ctx: ContextDep,
    principal: PrincipalDep,
    english: EnglishDep,
    idempotency_key: IdempotencyHeader = None,
) -> Envelope[TaskDetail] | JSONResponse:
    request = service.SubmitInput(
        user_id=principal.user_id,
        api_key_id=principal.api_key_id,
        model_name=body.modelName,
        prompt=body.prompt,
        image_url=body.imageUrl,
        allowed_models=principal.key_models,
        callback_url=body.callbackUrl,
        parameters=body.parameters,
        n=body.n,
    )
    if idempotency_key is None:
        return ok(await service.submit(ctx, request))

    async def run(held: idempotency.Held) -> idempotency.Outcome:
        if held.task_nos:
            task = await service.task_of(ctx.db, principal.user_id, held.task_nos[0])
            detail = task_detail(task, ctx.settings.timezone)
        else:
            detail = await service.submit(ctx, request, idempotency.recorder(held))
        return idempotency.Outcome(200, ok(detail).model_dump(mode="json"))

    outcome, replayed = await idempotency.once(
        ctx,
        principal.user_id,
        idempotency_key,
        idempotency.fingerprint("submit", _printed(body)),
        SUBMIT_LEASE_SECONDS,
        run,
    )
    answer = _reason_in_english(outcome.body) if english else outcome.body
    return JSONResponse(answer, outcome.status, headers=idempotency.replay_headers(replayed))


def _reason_in_english(body: dict[str, Any]) -> dict[str, Any]:
    """A kept submit answer (kept in Chinese, for a replay in either language) with its
    task's failure reason in English."""
    task = body.get("data")
    if not isinstance(task, dict) or not task.get("errorMessage"):
        return body
    return {**body, "data": {**task, "errorMessage": english_reason(task["errorMessage"])}}


def _printed(body: SubmitRequest) -> dict[str, Any]:
    """The body as its idempotency print: the extension fields only when given, so a key
    used before they existed prints the same."""
    printed = body.model_dump()
    if body.parameters is None:
        del printed["parameters"]
    if body.n == 1:
        del printed["n"]
    return printed


@router.post("/user/ai/quote", response_model=Envelope[QuoteOut])
async def quote(body: QuoteRequest, ctx: ContextDep, principal: PrincipalDep) -> Envelope[QuoteOut]:
    """What submitting ``body`` would charge the caller now (group multiplier applied),
    beside the balance; nothing is charged or written."""
    return ok(await quotes.quote(ctx, principal, body))


# Declared before /{task_no} so that "list" is never read as a task number.
@router.get("/user/ai/tasks/list", response_model=Envelope[Page[TaskDetail]])
async def list_tasks(
    ctx: ContextDep,
    principal: PrincipalDep,
    english: EnglishDep,
    page: PageNo = 1,
    size: PageSize = 10,
    taskType: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
) -> Envelope[Page[TaskDetail]]:
    rows, total = await service.tasks_of(
        ctx.db, principal.user_id, page=page, size=size, task_type=taskType, status=status
    )
    tz = ctx.settings.timezone
    details = [task_detail(t, tz, english) for t in rows]
    return ok(Page[TaskDetail].of(details, total, page, size))


@router.post("/user/ai/tasks/{task_no}/cancel", response_model=Envelope[TaskDetail])
async def cancel(
    task_no: str, ctx: ContextDep, principal: PrincipalDep, english: EnglishDep
) -> Envelope[TaskDetail]:
    detail = await service.cancel(ctx, principal.user_id, task_no)
    return ok(in_english(detail) if english else detail)


@router.get("/user/ai/tasks/{task_no}", response_model=Envelope[TaskDetail])
async def get_task(
    task_no: str, ctx: ContextDep, principal: PrincipalDep, english: EnglishDep
) -> Envelope[TaskDetail]:
    task = await service.task_of(ctx.db, principal.user_id, task_no)
    return ok(task_detail(task, ctx.settings.timezone, english))


class UsageDay(BaseModel):
    date: str
    tasks: int
    completed: int
    failed: int
    points: int


@router.get("/user/usage", response_model=Envelope[list[UsageDay]])
async def usage(
    ctx: ContextDep,
    principal: PrincipalDep,
    days: Annotated[int, Query(ge=1, le=90)] = 30,
) -> Envelope[list[UsageDay]]:
    """The caller's tasks per local day over the last ``days`` days: submitted, completed,
    failed, and points spent net of refunds."""
    tz = ctx.settings.timezone
    rows = await service.usage_of(ctx.db, principal.user_id, days, tz)
    return ok([UsageDay(**r) for r in rows])
