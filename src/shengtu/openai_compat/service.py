"""The OpenAI images API on the platform's own rules: model aliases, OpenAI's fields as a
model's parameters, waiting for the pictures, and the answer's shape."""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, bindparam, select

from shengtu.catalog.service import CatalogModel
from shengtu.context import AppContext
from shengtu.errors import BadRequest, InsufficientPoints
from shengtu.models.tasks import TERMINAL, AiTask, Status
from shengtu.pricing.parameters import Chosen
from shengtu.pricing.service import cheapest_edit_quote

# An OpenAI model name, or the spec's family name, for the family whose aspect-ratio
# models a request's ``size`` chooses among.
ALIASES = {"gpt-image-1": "sc_soraimg", "sc_soraimg": "sc_soraimg"}
SIZES = {"1024x1024": "1:1", "1024x1536": "2:3", "1536x1024": "3:2", "auto": "auto"}
# What "auto" and dall-e's words mean for a model's quality choice: "standard" is the
# ordinary (default) quality, "hd" the high one.
DEFAULT_QUALITIES = frozenset({"auto", "standard"})
HD = {"hd": "high"}
# A model parameter's name in a refusal (Parameters.choose) → OpenAI's field.
OPENAI_FIELDS = {"aspectRatio": "size", "imageUrl": "image"}
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
    an alias of the same name), else by an alias and ``size``. Whether the model offers
    ``size`` is :func:`openai_parameters`'s to judge."""
    for model in models:
        if model.model_name == name:
            if not model.serves(task_type):
                route = "generations" if task_type == "text_to_image" else "edits"
                raise Refused(400, f"参数错误:模型 {name} 不能用于 /v1/images/{route}", "model")
            return model
    family = ALIASES.get(name)
    if family is None:
        raise Refused(404, f"模型 {name[:64]} 不存在或已停用", "model")
    ratio = SIZES.get(size or "auto")
    if ratio is None:
        raise Refused(400, f"参数错误:size 只能是 {', '.join(SIZES)}", "size")
    for model in models:
        if (
            model.model_name.startswith(f"{family}_")
            and model.serves(task_type)
            and (model.aspect_ratio or "auto") == ratio
        ):
            return model
    raise Refused(404, f"模型 {name[:64]} 不存在或已停用", "model")


def _not_offered(model: CatalogModel, field: str, value: str, offered: list[str]) -> Refused:
    return Refused(
        400,
        f"参数错误:模型 {model.model_name} 不提供 {field}={value[:32]},可选值:{', '.join(offered)}",
        field,
    )


# A size's aspect ratio matches an offered one this close: FLUX's own "16:9" is 1344x768
# (7:4), and dall-e's wide 1792x1024 means the same.
RATIO_TOLERANCE = 0.02


def _proportion(text: str, separator: str) -> float | None:
    """``W<separator>H`` as W / H (None: not two positive whole numbers)."""
    width, _, height = text.partition(separator)
    if not (width.isdigit() and height.isdigit()) or not int(width) or not int(height):
        return None
    return int(width) / int(height)


def _nearest_ratio(size: str, offered: tuple[str, ...]) -> str | None:
    """The offered aspect ratio (``W:H``) of ``size`` (``WxH``), within RATIO_TOLERANCE."""
    wanted = _proportion(size, "x")
    if wanted is None:
        return None
    best: tuple[float, str] | None = None
    for ratio in offered:
        value = _proportion(ratio, ":")
        if value is None:
            continue
        off = abs(math.log(wanted / value))
        if off <= math.log1p(RATIO_TOLERANCE) and (best is None or off < best[0]):
            best = off, ratio
    return best[1] if best else None


def _size(model: CatalogModel, by_alias: bool, size: str | None) -> dict[str, str]:
    """OpenAI's ``size`` as the model's choice: its size, else the offered aspect ratio of
    that size; a model with neither choice draws its one aspect ratio, which ``size`` may
    name."""
    asked = size or "auto"
    choices = model.parameters.choices
    if "size" in choices:
        choice = choices["size"]
        if asked in choice.values:
            return {"size": asked}
        if asked == "auto":
            return {}
        raise _not_offered(model, "size", asked, ["auto", *choice.values])
    if "aspectRatio" in choices:
        choice = choices["aspectRatio"]
        ratio = _nearest_ratio(asked, choice.values)
        if ratio is not None:
            return {"aspectRatio": ratio}
        if asked == "auto":
            return {}
        raise _not_offered(
            model, "size", asked, [f"auto 或宽高比为 {', '.join(choice.values)} 的尺寸"]
        )
    # The alias chose the model by this size.
    if by_alias or asked == "auto":
        return {}
    drawn = [s for s, r in SIZES.items() if r != "auto" and r == model.aspect_ratio]
    if asked in drawn:
        return {}
    raise _not_offered(model, "size", asked, ["auto", *drawn])


def _quality(model: CatalogModel, quality: str | None) -> dict[str, str]:
    choice = model.parameters.choices.get("quality")
    asked = quality or "auto"
    if choice is None:
        if asked in DEFAULT_QUALITIES:
            return {}
        raise _not_offered(model, "quality", asked, ["auto"])
    if asked in choice.values:
        return {"quality": asked}
    if asked in DEFAULT_QUALITIES:
        return {}
    if HD.get(asked) in choice.values:
        return {"quality": HD[asked]}
    raise _not_offered(model, "quality", asked, ["auto", *choice.values])


@dataclass(frozen=True)
class Asked:
    """What an OpenAI request asks of its model: ``count`` tasks of ``chosen.n`` pictures,
    and the values of the model's parameters (``parameters``, as a submit takes them)."""

    parameters: dict[str, str]
    chosen: Chosen
    count: int

    @property
    def pictures(self) -> int:
        return self.count * self.chosen.n


def openai_parameters(
    model: CatalogModel,
    name: str,
    *,
    size: str | None,
    quality: str | None,
    n: int,
    references: int = 0,
) -> Asked:
    """OpenAI's ``size``, ``quality`` and ``n`` as ``model``'s parameters, reached by the
    request's model ``name`` (its own, or an alias): honoured, or refused naming the field
    (never dropped). ``n`` pictures are one task of ``n`` when the model makes that many
    in one job, else ``n`` tasks of one."""
    parameters = {
        **_size(model, model.model_name != name, size),
        **_quality(model, quality),
    }
    per_task = n if model.parameters.max_n >= n else 1
    try:
        chosen = model.parameters.choose(model.model_name, parameters, per_task, references)
    except BadRequest as exc:
        data: Mapping[str, Any] = exc.data if isinstance(exc.data, Mapping) else {}
        param = str(data.get("param") or "") or None
        raise Refused(400, exc.message, OPENAI_FIELDS.get(param or "", param)) from exc
    return Asked(parameters, chosen, n // per_task)


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


def _offered(model: CatalogModel) -> dict[str, Any]:
    """The model's parameters as a client chooses them: the values and defaults, not the
    upstream's spelling of them."""
    params = model.parameters
    out: dict[str, Any] = {
        "choices": {
            name: {"values": list(c.values), "default": c.default}
            for name, c in params.choices.items()
        },
        "maxN": params.max_n,
    }
    if params.max_references is not None:
        out["maxReferences"] = params.max_references
    if params.extra:
        out["extra"] = list(params.extra)
    return out


def model_cards(
    models: list[CatalogModel], allowed: tuple[str, ...] | None
) -> list[dict[str, Any]]:
    """GET /v1/models's entries, in :func:`model_names`'s order: beside OpenAI's ``id``,
    each catalog model's task type, list price per picture (before the user's group
    multiplier), parameters and price rule; each alias's sizes and the models it leads to."""
    usable = {m.model_name: m for m in models if allowed is None or m.model_name in allowed}
    cards: list[dict[str, Any]] = []
    for name in model_names(models, allowed):
        model = usable.get(name)
        if model is not None:
            cards.append(
                {
                    "id": name,
                    "description": model.description,
                    "task_type": model.task_type,
                    "points": model.points_cost,
                    "parameters": _offered(model),
                    "price_rule": model.price_rule.to_json(),
                }
            )
            continue
        family = [m for n, m in usable.items() if n.startswith(f"{ALIASES[name]}_")]
        ratios = {m.aspect_ratio or "auto" for m in family}
        sizes = [size for size, ratio in SIZES.items() if ratio in ratios]
        cards.append(
            {
                "id": name,
                "description": f"别名:按 size 选择 {ALIASES[name]}_* 模型",
                "alias_of": [m.model_name for m in family],
                "parameters": {
                    "choices": {
                        "size": {
                            "values": sizes,
                            "default": "auto" if "auto" in sizes or not sizes else sizes[0],
                        }
                    }
                },
            }
        )
    return cards


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
    # Every picture delivered ({"url", "key"}), when more than one was.
    results: list[dict[str, str]] | None = None

    @property
    def pictures(self) -> list[tuple[str | None, str | None]]:
        """(url, key) of each picture the task delivered: a task that made fewer than it
        asked for shows those it made (the rest were refunded)."""
        if self.results:
            return [(r.get("url"), r.get("key")) for r in self.results]
        return [(self.result_url, self.result_key)]


_ENDING = select(
    AiTask.task_no,
    AiTask.status,
    AiTask.result_url,
    AiTask.result_key,
    AiTask.error_message,
    AiTask.results,
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


async def image_items(ctx: AppContext, task: Ending, response_format: str) -> list[dict[str, Any]]:
    """The answer's ``data`` items of a completed task: one for each picture it delivered."""
    items: list[dict[str, Any]] = []
    for url, key in task.pictures:
        if response_format == "b64_json":
            data = await ctx.storage.get(key) if key else None
            if data is None:
                raise Refused(410, f"任务 {task.task_no} 的图片已过期删除")
            items.append(
                {"b64_json": base64.b64encode(data).decode("ascii"), "revised_prompt": None}
            )
        else:
            items.append({"url": url, "revised_prompt": None})
    return items
