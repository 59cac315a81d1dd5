"""``/v1/images/generations``, ``/v1/images/edits`` and ``/v1/models``, as OpenAI's SDKs
and the tools built on them (Cherry Studio, Open WebUI, LobeChat, Dify) speak them.

Each request is the platform's own submit (charge, refund and state machine unchanged):
one task of ``n`` pictures when the model makes that many in one job, else ``n`` tasks
charged together; then a wait for their completion events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)
from starlette.datastructures import UploadFile

from shengtu.api.errors import describe_validation_error
from shengtu.api.inputs import RequestBody
from shengtu.auth.deps import PrincipalDep
from shengtu.auth.principal import Principal
from shengtu.catalog.service import CatalogModel
from shengtu.context import AppContext, ContextDep
from shengtu.errors import BadRequest
from shengtu.idempotency import service as idempotency
from shengtu.openai_compat.errors import openai_error
from shengtu.openai_compat.service import (
    Asked,
    Finished,
    Refused,
    image_items,
    model_cards,
    openai_parameters,
    read_tasks,
    refuse_unpayable,
    resolve_model,
    submit_and_wait,
)
from shengtu.storage import service as storage
from shengtu.tasks import service as tasks
from shengtu.tasks.router import IdempotencyHeader

router = APIRouter(tags=["openai"])


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    error: OpenAIError


OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIErrorBody, "description": text}
    for status, text in {
        400: "参数错误",
        401: "API Key 无效",
        403: "无权使用",
        404: "模型不存在",
        409: "同一 Idempotency-Key 的请求仍在处理",
        413: "请求体过大",
        422: "Idempotency-Key 已用于参数不同的请求",
        429: "请求过于频繁,或积分不足(insufficient_quota)",
        500: "服务器错误",
        502: "生成失败(积分已退还)",
        503: "服务暂时不可用",
        504: "等待超时:图片仍在生成,错误中列出任务号",
    }.items()
}


class ImageGenerationRequest(RequestBody):
    # Fields OpenAI defines that the platform has no use for (style, user, background …)
    # are accepted and ignored, as clients send them unasked. size, quality and n are the
    # model's parameters: honoured, or refused naming the field.
    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1)
    model: str = Field(default="gpt-image-1", min_length=1, max_length=64)
    n: int = Field(default=1, ge=1, le=4)
    size: str | None = Field(default=None, max_length=32)
    quality: str | None = Field(default=None, max_length=32)
    response_format: Literal["url", "b64_json"] = "url"

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Dumped for an Idempotency-Key's print: a request without quality prints as it
        # did before quality was read, so a key stored then still replays.
        out: dict[str, Any] = handler(self)
        if out.get("quality") is None:
            out.pop("quality", None)
        return out


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]


class ModelCard(BaseModel):
    """OpenAI's model entry; the fields after ``owned_by`` are the platform's own (OpenAI's
    clients ignore what they do not know)."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "shengtu"
    description: str | None = None
    # text_to_image (generations), image_to_image (edits) or both.
    task_type: str | None = None
    # One picture's list price in points, before the user's group multiplier.
    points: int | None = None
    # The values offered: {"choices": {name: {"values", "default"}}, "maxN", ...}.
    parameters: dict[str, Any] | None = None
    # How the price follows the values chosen (docs/clients.md).
    price_rule: dict[str, Any] | None = None
    # An alias: the catalog models its size chooses among.
    alias_of: list[str] | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get(
    "/v1/models",
    response_model=ModelList,
    response_model_exclude_none=True,
    responses=OPENAI_ERRORS,
)
async def list_models(ctx: ContextDep, principal: PrincipalDep) -> ModelList:
    cards = model_cards(await ctx.catalog.enabled(), principal.key_models)
    return ModelList(data=[ModelCard(**card) for card in cards])


@router.post("/v1/images/generations", response_model=ImagesResponse, responses=OPENAI_ERRORS)
async def generations(
    body: ImageGenerationRequest,
    ctx: ContextDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyHeader = None,
) -> JSONResponse:
    try:
        model = resolve_model(await ctx.catalog.enabled(), body.model, body.size, "text_to_image")
        asked = _asked(model, body)
    except Refused as r:
        return openai_error(r.status, r.message, param=r.param)
    keyed = None
    if idempotency_key is not None:
        keyed = idempotency_key, idempotency.fingerprint("v1/images", body.model_dump())
    request = _submit_input(principal, model.model_name, body.prompt, None, asked)
    return await _images(ctx, principal, request, asked.count, body, keyed)


@router.post(
    "/v1/images/edits",
    response_model=ImagesResponse,
    responses=OPENAI_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["image", "prompt"],
                        "properties": {
                            "image": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            },
                            "prompt": {"type": "string"},
                            "model": {"type": "string"},
                            "n": {"type": "integer", "minimum": 1, "maximum": 4},
                            "size": {"type": "string"},
                            "quality": {"type": "string"},
                            "response_format": {"type": "string", "enum": ["url", "b64_json"]},
                        },
                    }
                }
            },
        }
    },
)
async def edits(
    request: Request,
    ctx: ContextDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyHeader = None,
) -> JSONResponse:
    limits = ctx.settings
    # A key whose first request got through answers its retries whatever the balance is
    # now (it paid for its tasks), so it skips the early refusals. Any other request with
    # a balance that cannot pay for an edit is refused before its body is read.
    stored: str | None = None
    if idempotency_key is not None:
        idempotency.check_key(idempotency_key)
        stored = await idempotency.stored_print(ctx, principal.user_id, idempotency_key)
    if stored is None:
        await refuse_unpayable(ctx, principal.user_id)
    async with request.form(max_files=limits.max_reference_images + 1, max_fields=50) as form:
        files = [f for name in ("image", "image[]") for f in form.getlist(name)]
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if "mask" in form:
            return openai_error(400, "参数错误:暂不支持 mask(局部重绘)", param="mask")
        try:
            body = ImageGenerationRequest.model_validate(fields)
        except ValidationError as exc:
            err: dict[str, Any] = dict(exc.errors()[0])
            param = ".".join(str(p) for p in err.get("loc") or ()) or None
            return openai_error(400, f"参数错误:{describe_validation_error(err)}", param=param)
        uploads = [f for f in files if isinstance(f, UploadFile)]
        if not uploads or len(uploads) != len(files):
            return openai_error(400, "参数错误:缺少参考图文件 image", param="image")
        if len(uploads) > limits.max_reference_images:
            return openai_error(
                400, f"参数错误:参考图最多 {limits.max_reference_images} 张", param="image"
            )
        try:
            model = resolve_model(
                await ctx.catalog.enabled(), body.model, body.size, "image_to_image"
            )
            asked = _asked(model, body, len(uploads))
        except Refused as r:
            return openai_error(r.status, r.message, param=r.param)
        if stored is None:
            # The n pictures at today's price of the values chosen (and the references),
            # before the files are read into memory or hashed (the parser has only
            # spooled them).
            await tasks.refuse_unaffordable(
                ctx, model, principal.user_id, asked.pictures, asked.chosen
            )
        pictures = [await _read_upload(f, limits.max_upload_bytes) for f in uploads]
    keyed = None
    if idempotency_key is not None:
        # The files are hashed only for a key, and a large upload off the event loop.
        print_ = await _edit_print(body.model_dump(), pictures, stored)
        keyed = idempotency_key, print_

    async def store() -> list[str]:
        urls = []
        for data in pictures:
            stored = await storage.upload(ctx, principal.user_id, data)
            urls.append(ctx.storage.url(stored.key))
        return urls

    submit = _submit_input(principal, model.model_name, body.prompt, [], asked)
    return await _images(ctx, principal, submit, asked.count, body, keyed, store)


# Up to this many bytes of files are hashed on the loop: less than a thread's hand-off.
HASH_INLINE_BYTES = 256 * 1024


async def _digests(pictures: list[bytes], digest: Callable[[bytes], str]) -> list[str]:
    if sum(len(p) for p in pictures) <= HASH_INLINE_BYTES:
        return [digest(p) for p in pictures]
    return await asyncio.to_thread(lambda: [digest(p) for p in pictures])


async def _edit_print(params: dict[str, Any], pictures: list[bytes], stored: str | None) -> str:
    """The key's print of an edit: its parameters and its files' SHA-256.

    Keys stored before the files were hashed this way printed each file as
    ``fingerprint("file", data.hex())``: when the key's stored print is not this one, the
    old one is worked out too, and a match replays as it did before. Such keys are gone
    :data:`idempotency.KEPT` after the deploy, and the fallback with them."""
    print_ = idempotency.fingerprint(
        "v1/images", {**params, "image": await _digests(pictures, idempotency.file_digest)}
    )
    if stored is None or stored == print_:
        return print_
    old = idempotency.fingerprint(
        "v1/images",
        {**params, "image": await _digests(pictures, idempotency.legacy_file_digest)},
    )
    return old if old == stored else print_


async def _read_upload(file: UploadFile, limit: int) -> bytes:
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise BadRequest(f"参数错误:文件超过 {limit // (1024 * 1024)} MB 上限")
    return data


def _asked(model: CatalogModel, body: ImageGenerationRequest, references: int = 0) -> Asked:
    return openai_parameters(
        model, body.model, size=body.size, quality=body.quality, n=body.n, references=references
    )


def _submit_input(
    principal: Principal,
    model_name: str,
    prompt: str,
    image_urls: list[str] | None,
    asked: Asked,
) -> tasks.SubmitInput:
    return tasks.SubmitInput(
        user_id=principal.user_id,
        api_key_id=principal.api_key_id,
        model_name=model_name,
        prompt=prompt,
        image_url=image_urls,
        allowed_models=principal.key_models,
        parameters=asked.parameters,
        n=asked.chosen.n,
    )


async def _images(
    ctx: AppContext,
    principal: Principal,
    request: tasks.SubmitInput,
    count: int,
    body: ImageGenerationRequest,
    keyed: tuple[str, str] | None,
    store: Callable[[], Awaitable[list[str]]] | None = None,
) -> JSONResponse:
    """``count`` tasks of ``request``; ``keyed``: the request's Idempotency-Key and its
    print, when it has one."""
    wait = ctx.settings.openai_wait_seconds
    # The tasks as this request last read them; a replayed answer reads them afresh.
    seen: Finished | None = None

    async def run(held: idempotency.Held | None) -> idempotency.Outcome:
        nonlocal seen

        async def start() -> tuple[list[str], bool]:
            if held is not None and held.task_nos:
                return held.task_nos, False
            submit = request
            if store is not None:
                submit = replace(request, image_url=await store())
            claim = idempotency.recorder(held) if held is not None else None
            made = await tasks.submit_many(ctx, submit, count, claim)
            return [d.taskNo for d in made], True

        seen = await submit_and_wait(ctx, principal.user_id, start, wait)
        return _outcome(seen, body.response_format, wait)

    if keyed is None:
        outcome, replayed = await run(None), False
    else:
        key, print_ = keyed
        outcome, replayed = await idempotency.once(
            ctx, principal.user_id, key, print_, wait + 60, run
        )
    headers = idempotency.replay_headers(replayed)
    if outcome.status != 200:
        error = outcome.body["error"]
        return openai_error(
            outcome.status,
            error["message"],
            code=error.get("code"),
            headers=headers,
            extra={k: v for k, v in error.items() if k == "task_nos"},
        )
    done = seen or await read_tasks(ctx, principal.user_id, outcome.body["task_nos"])
    try:
        data = [
            item
            for task in done.completed
            for item in await image_items(ctx, task, outcome.body["response_format"])
        ]
    except Refused as r:
        return openai_error(r.status, r.message, headers=headers)
    return JSONResponse({"created": outcome.body["created"], "data": data}, headers=headers)


def _outcome(finished: Finished, response_format: str, wait: float) -> idempotency.Outcome:
    if finished.pending:
        numbers = finished.pending
        return idempotency.Outcome(
            504,
            {
                "error": {
                    "message": f"等待 {wait:g} 秒后图片仍在生成中,任务号:{', '.join(numbers)};"
                    "可稍后用 GET /user/ai/tasks/{任务号} 查询,"
                    "或用同一 Idempotency-Key 重试(不会重复扣费)",
                    "code": "generation_pending",
                    "task_nos": [t.task_no for t in finished.rows],
                }
            },
            final=False,
        )
    if not finished.completed:
        reason = finished.failed[0].error_message or "生成失败"
        return idempotency.Outcome(
            502,
            {"error": {"message": f"生成失败:{reason}(积分已退还)", "code": "generation_failed"}},
        )
    return idempotency.Outcome(
        200,
        {
            "created": int(time.time()),
            "response_format": response_format,
            "task_nos": [t.task_no for t in finished.completed],
        },
    )
