"""Submit, query and list tasks: the rules, no HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu import metrics
from shengtu.api.inputs import contains_nul
from shengtu.auth import quota
from shengtu.catalog.service import CatalogModel
from shengtu.config import Settings
from shengtu.context import AppContext
from shengtu.db import Conn, Database, add, run, utcnow
from shengtu.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientPoints,
    NotFound,
    TooManyRequests,
)
from shengtu.models.channels import Channel
from shengtu.models.storage import StoredFile
from shengtu.models.tasks import ACTIVE, ACTIVE_SQL, TERMINAL, AiTask, Status
from shengtu.netguard import WEB_PORTS, check_public_url, parse_http_url
from shengtu.points import service as points
from shengtu.pricing.parameters import Chosen
from shengtu.pricing.service import PriceQuery, price_now, quote
from shengtu.providers.registry import cancellable
from shengtu.safety import service as safety
from shengtu.safety.words import Verdict
from shengtu.storage.service import mark_used
from shengtu.tasks.handoff import Handoff
from shengtu.tasks.machine import move
from shengtu.tasks.schemas import (
    TASK_ROW_COLUMNS,
    TaskDetail,
    TaskRow,
    points_refunded,
    task_detail,
    task_version,
)
from shengtu.timefmt import local, midnight_utc
from shengtu.webhooks import service as webhooks

TASK_TYPES = ("text_to_image", "image_to_image")


@dataclass(frozen=True)
class SubmitInput:
    user_id: int
    api_key_id: int | None
    model_name: str
    prompt: str | None
    image_url: str | list[str] | None
    # The API key's allowed models (None: any).
    allowed_models: tuple[str, ...] | None = None
    # Where the task's own webhook goes (checked: a public URL, and a signing secret).
    callback_url: str | None = None
    # The values chosen for the model's parameters (size, quality …, and extra fields).
    parameters: Mapping[str, Any] | None = None
    # Pictures one task asks the upstream for (the model's ``maxN`` at most).
    n: int = 1


def make_task_no(created_at: datetime, task_id: int, tz: str) -> str:
    """``TASK-yyyyMMddHHmmssSSS-NNNN``; NNNN from the row id, so two tasks of one
    millisecond differ unless 10,000 ids were handed out within it."""
    t = local(created_at, tz)
    return f"TASK-{t:%Y%m%d%H%M%S}{t.microsecond // 1000:03d}-{task_id % 10000:04d}"


def parse_image_urls(value: str | list[str] | None, limit: int) -> list[str]:
    """``imageUrl`` as the spec sends it (one URL, or a JSON array in a string) or a real array."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise BadRequest("参数错误:imageUrl 不是合法的 JSON 数组") from exc
            if not isinstance(parsed, list) or not all(isinstance(u, str) for u in parsed):
                raise BadRequest("参数错误:imageUrl 数组的每一项都必须是 URL 字符串")
            urls: list[str] = parsed
        else:
            urls = [text]
    else:
        urls = value
    check_reference_count(len(urls), limit)
    cleaned = [u.strip() for u in urls]
    if any(not u for u in cleaned):
        raise BadRequest("参数错误:imageUrl 中有空地址")
    if contains_nul(cleaned):
        raise BadRequest("参数错误:imageUrl 含有非法字符(NUL)")
    return cleaned


def check_reference_count(count: int, limit: int) -> None:
    if count > limit:
        raise BadRequest(f"参数错误:参考图最多 {limit} 张,收到 {count} 张")


def check_model_takes(model: CatalogModel, references: int) -> None:
    """A text-to-image model takes no reference image."""
    if references and not model.takes_images:
        raise BadRequest(f"参数错误:文生图模型 {model.model_name} 不接受参考图(imageUrl)")


def validate_prompt(prompt: str | None, max_chars: int) -> str:
    if prompt is None or not prompt.strip():
        raise BadRequest("参数错误:prompt 不能为空")
    if len(prompt) > max_chars:
        raise BadRequest(f"参数错误:prompt 过长(最多 {max_chars} 个字符,收到 {len(prompt)})")
    return prompt.strip()


@dataclass(frozen=True)
class References:
    """The reference images of a submit: uploads of the user's own, and outside URLs."""

    urls: list[str]
    own_keys: list[str]
    external: list[str]


async def _check_own_uploads(ctx: AppContext, user_id: int, urls: list[str]) -> References:
    own = {u: ctx.storage.key_from_url(u) for u in urls}
    wanted = [k for k in own.values() if k]
    if wanted:
        async with ctx.db.read() as session:
            found = set(
                await session.scalars(
                    select(StoredFile.key).where(
                        StoredFile.user_id == user_id, StoredFile.key.in_(wanted)
                    )
                )
            )
        for url, key in own.items():
            if key and key not in found:
                raise BadRequest(f"参数错误:参考图不存在或不属于当前用户: {url[:100]}")
    return References(urls, wanted, [u for u, k in own.items() if not k])


async def _check_external_urls(ctx: AppContext, urls: list[str]) -> None:
    """Outside URLs are handed to the upstream: public addresses and web ports only.
    Looked up in the submit's own bounded resolver, all at once (a slow name costs one
    wait); the first refusal wins."""
    await asyncio.gather(
        *(check_public_url(u, resolver=ctx.resolver, ports=WEB_PORTS) for u in urls)
    )


@dataclass(frozen=True)
class Checked:
    """A submit that passed the checks needing no network."""

    model: CatalogModel
    prompt: str  # as it goes upstream: the words the operator masks, masked
    refs: References
    chosen: Chosen
    # What the word lists caught and let through (masked or flagged): kept with the task.
    caught: Caught | None = None


@dataclass(frozen=True)
class Caught:
    written: str  # the prompt as the user wrote it
    verdict: Verdict


async def validate_submit(ctx: AppContext, req: SubmitInput) -> Checked:
    """The checks that need no network: model, parameters, prompt, references' shape and
    ownership."""
    model = await ctx.catalog.get(req.model_name)
    if model is None:
        raise BadRequest(f"参数错误:模型 {req.model_name[:64]} 不存在或已停用")
    if req.allowed_models is not None and model.model_name not in req.allowed_models:
        raise Forbidden(f"该 API Key 不允许使用模型 {model.model_name}")
    written = validate_prompt(req.prompt, ctx.settings.max_prompt_chars)
    # Before anything is charged: a blocked prompt is refused here.
    verdict = await ctx.prompt_check.screen(req.user_id, written)
    prompt = verdict.prompt
    urls = parse_image_urls(req.image_url, ctx.settings.max_reference_images)
    if model.needs_images and not urls:
        raise BadRequest(f"参数错误:图生图模型 {model.model_name} 需要至少一张参考图(imageUrl)")
    check_model_takes(model, len(urls))
    chosen = model.parameters.choose(model.model_name, req.parameters, req.n, len(urls))
    for url in urls:
        parse_http_url(url)
    refs = await _check_own_uploads(ctx, req.user_id, urls)
    # Last (it is a call out, and a paid one): the moderation service, if the operator
    # has one, on the prompt as it would go upstream.
    await ctx.moderation.screen(req.user_id, prompt)
    return Checked(model, prompt, refs, chosen, Caught(written, verdict) if verdict.hits else None)


_INFLIGHT_OF_USER = select(func.count()).where(
    AiTask.user_id == bindparam("owner", type_=Integer), AiTask.status.in_(ACTIVE_SQL)
)
_INFLIGHT_OF_KEY = select(func.count()).where(
    AiTask.api_key_id == bindparam("owner", type_=Integer), AiTask.status.in_(ACTIVE_SQL)
)
_SET_TASK_NO = (
    update(AiTask).where(AiTask.id == bindparam("task_id")).values(task_no=bindparam("number"))
)


async def submit(ctx: AppContext, req: SubmitInput, claim: Claim | None = None) -> TaskDetail:
    return (await submit_many(ctx, req, 1, claim))[0]


# Called in the submit's write transaction with its task numbers: an idempotency key
# records them there, so a charge and its key's record are one commit.
Claim = Callable[[Conn, list[str]], Awaitable[None]]


async def submit_many(
    ctx: AppContext, req: SubmitInput, count: int, claim: Claim | None = None
) -> list[TaskDetail]:
    """``count`` tasks of one request (of ``req.n`` pictures each), charged together or
    not at all."""
    checked = await validate_submit(ctx, req)
    model, prompt, refs, chosen = checked.model, checked.prompt, checked.refs, checked.chosen
    settings = ctx.settings
    callback_url = None
    if req.callback_url is not None:
        callback_url = await webhooks.check_callback(ctx, req.user_id, req.callback_url)
    if refs.external:
        # The cheap refusals before any name lookup: a zero-point account or one at its
        # in-flight limit costs no DNS. The write transaction below stays the judge of
        # both (and, with no name to look up, the only one).
        await _refuse_early(ctx, model, req, count, chosen)
        await _check_external_urls(ctx, refs.external)
    # A worker in this process takes the new tasks, leased to it in the transaction.
    handoff = Handoff(ctx.taker, count)
    try:
        async with ctx.db.transaction() as session:
            # Charged at the price and group multiplier of this moment: an admin's change
            # applies to every submit after it, whatever a process's catalog cache holds.
            price = await price_now(
                session, PriceQuery(req.user_id, model.model_name, count * chosen.n, chosen)
            )
            charge = price.each * chosen.n
            balance_after = await points.debit(session, req.user_id, price.total)
            if req.api_key_id is not None:
                await quota.spend(session, req.api_key_id, price.total)
            # The debit locked this user's points row: the counts below cannot race.
            await _check_inflight(partial(_first, session), settings, req, count)
            await mark_used(session, req.user_id, refs.own_keys)
            now = utcnow()
            common: dict[str, Any] = dict(
                user_id=req.user_id,
                api_key_id=req.api_key_id,
                model_name=model.model_name,
                task_type="image_to_image" if refs.urls else "text_to_image",
                prompt=prompt,
                image_urls=refs.urls,
                points_cost=charge,
                pictures=chosen.n,
                params=chosen.to_json(),
                pricing=dict(price.basis),
                provider=model.provider,
                upstream_model=model.upstream_model,
                upstream_params={
                    **model.upstream_params,
                    **model.parameters.upstream_fields(chosen),
                },
                callback_url=callback_url,
                deadline_at=now + timedelta(seconds=settings.task_deadline),
                created_at=now,
                updated_at=now,
                **handoff.columns(now),
            )
            tasks = [await _create(session, common, settings) for _ in range(count)]
            # One ledger row per task (its refund names it), the balance stepping down.
            for i, task in enumerate(tasks):
                await points.record(
                    session,
                    req.user_id,
                    -charge,
                    balance_after + charge * (count - 1 - i),
                    "consume",
                    task.task_no,
                    note=f"生图任务扣费 {model.model_name}",
                )
            if checked.caught is not None:
                caught = checked.caught
                await safety.keep(
                    session, req.user_id, caught.written, caught.verdict, tasks[0].task_no
                )
            if claim is not None:
                await claim(session, [t.task_no for t in tasks])
    except BaseException:
        handoff.abandon()
        raise
    metrics.points("charged", price.total)
    if checked.caught is not None:
        safety.count_let_through(checked.caught.verdict)
    # As committed: once handed over, the worker's steps change the tasks.
    details = [task_detail(t, settings.timezone) for t in tasks]
    versions = [task_version(t) for t in tasks]
    if not handoff.hand(tasks):
        await ctx.bus.nudge_workers()
    for detail, version in zip(details, versions, strict=True):
        await ctx.bus.publish(
            req.user_id, {"event": "task.updated", "data": detail.model_dump()}, version
        )
    return details


async def _create(session: Conn, columns: dict[str, Any], settings: Settings) -> AiTask:
    """A new task of ``columns``, created and numbered (the number comes from its id)."""
    task = AiTask(
        **columns,
        task_no=f"pending-{uuid.uuid4().hex}",
        status=Status.CREATED.value,
        progress=0,
    )
    await add(session, task)
    task.task_no = make_task_no(task.created_at, task.id, settings.timezone)
    await run(session, _SET_TASK_NO, {"task_id": task.id, "number": task.task_no})
    return task


async def refuse_unaffordable(
    ctx: AppContext, model: CatalogModel, user_id: int, count: int, chosen: Chosen | None = None
) -> None:
    """402 when the balance cannot pay ``count`` pictures of ``model``: the balance and the
    model's current price in one read (a process's catalog cache may be seconds old; a
    refusal must quote, and judge by, today's price). The charge stays the judge of what
    this lets through."""
    chosen = chosen or model.parameters.choose(model.model_name, None)
    quoted = await quote(ctx.db, PriceQuery(user_id, model.model_name, count, chosen))
    if quoted is not None:
        balance, price = quoted.balance, quoted.price.total
        if balance < price:
            raise InsufficientPoints(f"积分不足:需要 {price} 积分,当前余额 {balance} 积分")


async def _refuse_early(
    ctx: AppContext, model: CatalogModel, req: SubmitInput, count: int, chosen: Chosen
) -> None:
    await refuse_unaffordable(ctx, model, req.user_id, count * chosen.n, chosen)
    await _check_inflight(ctx.db.first, ctx.settings, req, count)


async def _first(
    session: Conn, stmt: Select[Any], params: dict[str, Any]
) -> tuple[Any, ...] | None:
    return (await run(session, stmt, params)).first()


async def _check_inflight(
    first: Callable[[Select[Any], dict[str, Any]], Awaitable[tuple[Any, ...] | None]],
    settings: Settings,
    req: SubmitInput,
    adding: int = 1,
) -> None:
    """``first`` reads one row: in the charging transaction, or outside it for the early
    refusal."""
    limits = [(settings.max_inflight_tasks, _INFLIGHT_OF_USER, req.user_id, "当前用户")]
    if req.api_key_id is not None:
        limits.append(
            (settings.max_inflight_per_api_key, _INFLIGHT_OF_KEY, req.api_key_id, "该 API Key")
        )
    for limit, counting, owner, who in limits:
        if not limit:
            continue
        row = await first(counting, {"owner": owner})
        count = row[0] if row else 0
        if (count or 0) + adding > limit:
            raise TooManyRequests(
                f"{who}进行中的任务已达上限 {limit} 个,请等待任务完成后再提交", retry_after=5
            )


async def cancel(ctx: AppContext, user_id: int, task_no: str) -> TaskDetail:
    """End a task the upstream has not accepted as ``failed``, with the points back.

    Only then does a cancel cost the operator nothing: once the upstream accepted the job
    it runs on and is paid for (the 速创 protocol has no cancel), so a refund then would
    let submit → cancel loops spend the operator's money for free; that answers 409. The
    move is guarded by the status and by the lease: a worker that holds the task may be
    sending it upstream at this moment, and the cancel waits for it (409, try again).
    """
    async with ctx.db.write() as session:
        task = await get_task(session, user_id, task_no)
        if task.status in TERMINAL:
            raise Conflict(f"任务 {task_no} 已结束({task.status}),无法取消")
        if task.status != Status.CREATED:
            if await _upstream_can_cancel(session, task):
                return await _request_upstream_cancel(ctx, session, task)
            raise Conflict(
                f"任务 {task_no} 已被上游接受并开始生成,上游费用已产生,无法取消;"
                "任务将正常完成,失败时自动退还积分"
            )
        moved = await move(
            session,
            task,
            Status.FAILED,
            lease_owner=None,
            unleased=True,
            error_message="用户已取消任务",
        )
        if moved is None:
            raise Conflict(f"任务 {task_no} 正在提交给上游,请稍后刷新后再试")
    detail = task_detail(moved, ctx.settings.timezone)
    await ctx.bus.publish(
        user_id, {"event": "task.updated", "data": detail.model_dump()}, task_version(moved)
    )
    return detail


async def _upstream_can_cancel(session: AsyncSession, task: AiTask) -> bool:
    if task.channel_id is None:
        return False
    protocol = await session.scalar(select(Channel.protocol).where(Channel.id == task.channel_id))
    return protocol is not None and cancellable(protocol)


async def _request_upstream_cancel(
    ctx: AppContext, session: AsyncSession, task: AiTask
) -> TaskDetail:
    """The upstream can stop the job: the worker passes the cancel on at once, then fails
    the task with its points back (or completes it, if the picture was already done).
    Until then the answer shows the task as it is."""
    if task.cancel_requested_at is None:
        now = utcnow()
        await session.execute(
            update(AiTask)
            .where(AiTask.id == task.id, AiTask.status.in_([s.value for s in ACTIVE]))
            .values(cancel_requested_at=now, next_run_at=now)
        )
        await ctx.bus.nudge_workers()
    return task_detail(task, ctx.settings.timezone)


def task_not_found(task_no: str) -> NotFound:
    return NotFound(f"任务 {task_no[:40]} 不存在")


async def get_task(session: AsyncSession, user_id: int, task_no: str) -> AiTask:
    task = await session.scalar(
        select(AiTask).where(AiTask.task_no == task_no, AiTask.user_id == user_id)
    )
    if task is None:
        raise task_not_found(task_no)
    return task


async def list_tasks(
    session: AsyncSession,
    user_id: int,
    *,
    page: int,
    size: int,
    task_type: str | None,
    status: str | None,
) -> tuple[list[AiTask], int]:
    if task_type and task_type not in TASK_TYPES:
        raise BadRequest(f"参数错误:taskType 只能是 {' 或 '.join(TASK_TYPES)}")
    if status and status not in {s.value for s in Status}:
        raise BadRequest(f"参数错误:status 只能是 {', '.join(s.value for s in Status)}")
    where = [AiTask.user_id == user_id]
    if task_type:
        where.append(AiTask.task_type == task_type)
    if status:
        where.append(AiTask.status == status)
    total = await session.scalar(select(func.count()).select_from(AiTask).where(*where))
    rows = await session.scalars(
        select(AiTask)
        .where(*where)
        .order_by(AiTask.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    return list(rows), int(total or 0)


async def usage(session: AsyncSession, user_id: int, days: int, tz: str) -> list[dict[str, Any]]:
    """Per local day, oldest first, every day of the window present (zeros included)."""
    today = local(utcnow(), tz).date()
    first = today - timedelta(days=days - 1)
    since = midnight_utc(utcnow() - timedelta(days=days - 1), tz)
    out = {
        (first + timedelta(days=i)).isoformat(): dict.fromkeys(
            ("tasks", "completed", "failed", "points"), 0
        )
        for i in range(days)
    }
    rows = await session.execute(
        select(*TASK_ROW_COLUMNS).where(AiTask.user_id == user_id, AiTask.created_at >= since)
    )
    for row in rows.tuples():
        task = TaskRow._make(row)
        created, status = task.created_at, task.status
        day = out.get(local(created, tz).date().isoformat())
        if day is None:
            continue
        day["tasks"] += 1
        if status == Status.COMPLETED:
            day["completed"] += 1
        elif status == Status.FAILED:
            day["failed"] += 1
        day["points"] += task.points_cost - points_refunded(task)
    return [{"date": d, **v} for d, v in out.items()]


# The reads of the user's task routes, each in a transaction of its own: the routers open none.


async def task_of(db: Database, user_id: int, task_no: str) -> AiTask:
    """:func:`get_task`, in a read of its own."""
    async with db.read() as session:
        return await get_task(session, user_id, task_no)


async def tasks_of(
    db: Database,
    user_id: int,
    *,
    page: int,
    size: int,
    task_type: str | None,
    status: str | None,
) -> tuple[list[AiTask], int]:
    """:func:`list_tasks`, in a read of its own."""
    async with db.read() as session:
        return await list_tasks(
            session, user_id, page=page, size=size, task_type=task_type, status=status
        )


async def usage_of(db: Database, user_id: int, days: int, tz: str) -> list[dict[str, Any]]:
    """:func:`usage`, in a read of its own."""
    async with db.read() as session:
        return await usage(session, user_id, days, tz)
