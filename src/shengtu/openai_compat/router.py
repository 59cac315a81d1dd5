"""``/v1/images/generations``, ``/v1/images/edits`` and ``/v1/models``, as OpenAI's SDKs
and the tools built on them (Cherry Studio, Open WebUI, LobeChat, Dify) speak them.

Each request is the platform's own submit (charge, refund and state machine unchanged):
``n`` tasks charged together, then a wait for their completion events."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from shengtu.accounts.service import Principal
from shengtu.api.deps import ContextDep, PrincipalDep
from shengtu.api.errors import describe_validation_error
from shengtu.api.inputs import RequestBody
from shengtu.context import AppContext
from shengtu.errors import BadRequest
from shengtu.idempotency import service as idempotency
from shengtu.openai_compat.errors import openai_error
from shengtu.openai_compat.service import (
    Finished,
    Refused,
    image_item,
    model_names,
    read_tasks,
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
    # Fields OpenAI defines that the platform has no use for (quality, style, user,
    # background …) are accepted and ignored, as clients send them unasked.
    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1)
    model: str = Field(default="gpt-image-1", min_length=1, max_length=64)
    n: int = Field(default=1, ge=1, le=4)
    size: str | None = Field(default=None, max_length=32)
    response_format: Literal["url", "b64_json"] = "url"


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "shengtu"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get("/v1/models", response_model=ModelList, responses=OPENAI_ERRORS)
async def list_models(ctx: ContextDep, principal: PrincipalDep) -> ModelList:
    names = model_names(await ctx.catalog.enabled(), principal.key_models)
    return ModelList(data=[ModelCard(id=n) for n in names])


@router.post("/v1/images/generations", response_model=ImagesResponse, responses=OPENAI_ERRORS)
async def generations(
    body: ImageGenerationRequest,
    ctx: ContextDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyHeader = None,
) -> JSONResponse:
    try:
        model = resolve_model(await ctx.catalog.enabled(), body.model, body.size, "text_to_image")
    except Refused as r:
        return openai_error(r.status, r.message, param=r.param)
    return await _images(
        ctx,
        principal,
        _submit_input(principal, model.model_name, body.prompt, None),
        body,
        body.model_dump(),
        idempotency_key,
    )


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
        except Refused as r:
            return openai_error(r.status, r.message, param=r.param)
        pictures = [await _read_upload(f, limits.max_upload_bytes) for f in uploads]
    digests = [idempotency.fingerprint("file", p.hex()) for p in pictures]

    async def store() -> list[str]:
        urls = []
        for data in pictures:
            stored = await storage.upload(ctx, principal.user_id, data)
            urls.append(ctx.storage.url(stored.key))
        return urls

    return await _images(
        ctx,
        principal,
        _submit_input(principal, model.model_name, body.prompt, []),
        body,
        {**body.model_dump(), "image": digests},
        idempotency_key,
        store,
    )


async def _read_upload(file: UploadFile, limit: int) -> bytes:
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise BadRequest(f"参数错误:文件超过 {limit // (1024 * 1024)} MB 上限")
    return data


def _submit_input(
    principal: Principal, model_name: str, prompt: str, image_urls: list[str] | None
) -> tasks.SubmitInput:
    return tasks.SubmitInput(
        user_id=principal.user_id,
        api_key_id=principal.api_key_id,
        model_name=model_name,
        prompt=prompt,
        image_url=image_urls,
        allowed_models=principal.key_models,
    )


async def _images(
    ctx: AppContext,
    principal: Principal,
    request: tasks.SubmitInput,
    body: ImageGenerationRequest,
    params: dict[str, Any],
    idempotency_key: str | None,
    store: Callable[[], Awaitable[list[str]]] | None = None,
) -> JSONResponse:
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
            made = await tasks.submit_many(ctx, submit, body.n, claim)
            return [d.taskNo for d in made], True

        seen = await submit_and_wait(ctx, principal.user_id, start, wait)
        return _outcome(seen, body.response_format, wait)

    if idempotency_key is None:
        outcome, replayed = await run(None), False
    else:
        outcome, replayed = await idempotency.once(
            ctx,
            principal.user_id,
            idempotency_key,
            idempotency.fingerprint("v1/images", params),
            wait + 60,
            run,
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
        data = [await image_item(ctx, t, outcome.body["response_format"]) for t in done.completed]
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
