"""The OpenAI images API on the platform's own rules: model aliases, waiting for the
pictures, and the answer's shape."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, bindparam, select

from shengtu.catalog.service import CatalogModel
from shengtu.context import AppContext
from shengtu.errors import InsufficientPoints
from shengtu.models.tasks import TERMINAL, AiTask, Status
from shengtu.pricing.service import cheapest_edit_quote

# An OpenAI model name, or the spec's family name, for the family whose aspect-ratio
# models a request's ``size`` chooses among.
ALIASES = {"gpt-image-1": "sc_soraimg", "sc_soraimg": "sc_soraimg"}
SIZES = {"1024x1024": "1:1", "1024x1536": "2:3", "1536x1024": "3:2", "auto": "auto"}
TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)


class Refused(Exception):
    """A request OpenAI's API would refuse as invalid: a status, a message, the parameter."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def resolve_model(
    models: list[CatalogModel], name: str, size: str | None, task_type: str
) -> CatalogModel:
    """The catalog model a request names: by its own name (an operator's model wins over
    an alias of the same name), else by an alias and ``size``."""
    ratio = SIZES.get(size or "auto")
    if ratio is None:
        raise Refused(400, f"参数错误:size 只能是 {', '.join(SIZES)}", "size")
    for model in models:
        if model.model_name == name:
            if model.task_type != task_type:
                route = "generations" if task_type == "text_to_image" else "edits"
                raise Refused(400, f"参数错误:模型 {name} 不能用于 /v1/images/{route}", "model")
            return model
    family = ALIASES.get(name)
    for model in models if family is not None else ():
        if (
            model.model_name.startswith(f"{family}_")
            and model.task_type == task_type
            and (model.aspect_ratio or "auto") == ratio
        ):
            return model
    raise Refused(404, f"模型 {name[:64]} 不存在或已停用", "model")


def model_names(models: list[CatalogModel], allowed: tuple[str, ...] | None) -> list[str]:
    """What GET /v1/models lists: the catalog's models (those the key may use) and the
    aliases that lead to one of them."""
    names = [m.model_name for m in models if allowed is None or m.model_name in allowed]
    aliases = [
        alias
        for alias, family in ALIASES.items()
        if alias not in names and any(n.startswith(f"{family}_") for n in names)
    ]
    return aliases + names


async def refuse_unpayable(ctx: AppContext, user_id: int) -> None:
    """Refuse (402: OpenAI's 429 ``insufficient_quota``) a balance that cannot pay for one
    picture of the cheapest edit model: before an edit's body or files are read, so an
    account that cannot pay costs one indexed read, never the upload's parsing and
    hashing. Once the model is known, :func:`shengtu.tasks.service.refuse_unaffordable`
    judges its price."""
    quoted = await cheapest_edit_quote(ctx.db, user_id)
    if quoted is None:
        return
    balance, price = quoted.balance, quoted.price.total
    if balance < price:
        raise InsufficientPoints(f"积分不足:图生图最少需要 {price} 积分,当前余额 {balance} 积分")


@dataclass(frozen=True)
class Ending:
    """What the answer needs of a task."""

    task_no: str
    status: str
    result_url: str | None
    result_key: str | None
    error_message: str | None


_ENDING = select(
    AiTask.task_no, AiTask.status, AiTask.result_url, AiTask.result_key, AiTask.error_message
).where(
    AiTask.user_id == bindparam("user_id", type_=Integer),
    AiTask.task_no == bindparam("task_no", type_=String),
)


@dataclass(frozen=True)
class Finished:
    rows: list[Ending]

    @property
    def pending(self) -> list[str]:
        return [t.task_no for t in self.rows if t.status not in TERMINAL_VALUES]

    @property
    def completed(self) -> list[Ending]:
        return [t for t in self.rows if t.status == Status.COMPLETED]

    @property
    def failed(self) -> list[Ending]:
        return [t for t in self.rows if t.status == Status.FAILED]


async def read_tasks(ctx: AppContext, user_id: int, task_nos: list[str]) -> Finished:
    # One indexed read per task (n ≤ 4), each by a statement compiled once.
    rows = [await ctx.db.first(_ENDING, {"user_id": user_id, "task_no": n}) for n in task_nos]
    return Finished([Ending(*row) for row in rows if row is not None])


async def submit_and_wait(
    ctx: AppContext,
    user_id: int,
    start: Callable[[], Awaitable[tuple[list[str], bool]]],
    wait_seconds: float,
) -> Finished:
    """Start the tasks (or name those already started) and wait until each has ended or
    ``wait_seconds`` have passed, woken by the tasks' events; then read them once.
    ``start`` tells whether it made the tasks now."""
    async with ctx.bus.endings(user_id) as endings:
        task_nos, made = await start()
        futures = endings.watch(task_nos)
        # Any that ended before the watch began (an earlier request's tasks; or a worker
        # in another process quicker than this one): read once. Tasks made just now, on
        # a bus that delivers inline, cannot have: nothing ran between.
        ended: set[str] = set()
        if not (made and ctx.bus.delivers_inline):
            ended = {
                t.task_no
                for t in (await read_tasks(ctx, user_id, task_nos)).rows
                if t.status in TERMINAL_VALUES
            }
        pending = [f for n, f in zip(task_nos, futures, strict=True) if n not in ended]
        if pending:
            await asyncio.wait(pending, timeout=wait_seconds)
    return await read_tasks(ctx, user_id, task_nos)


async def image_item(ctx: AppContext, task: Ending, response_format: str) -> dict[str, Any]:
    if response_format == "b64_json":
        data = await ctx.storage.get(task.result_key) if task.result_key else None
        if data is None:
            raise Refused(410, f"任务 {task.task_no} 的图片已过期删除")
        return {"b64_json": base64.b64encode(data).decode("ascii"), "revised_prompt": None}
    return {"url": task.result_url, "revised_prompt": None}
