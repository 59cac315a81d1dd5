from __future__ import annotations

import secrets

import anyio
from fastapi import APIRouter, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel

from shengtu.api.deps import ContextDep, PrincipalDep
from shengtu.api.envelope import Envelope, ok
from shengtu.db import utcnow
from shengtu.errors import BadRequest, NotFound
from shengtu.storage.images import NotAnImage, sniff_image
from shengtu.storage.models import StoredFile
from shengtu.timefmt import local

router = APIRouter(tags=["files"])


class UploadOut(BaseModel):
    url: str
    key: str
    size: int
    contentType: str
    width: int
    height: int


@router.post("/user/files/upload", response_model=Envelope[UploadOut])
async def upload(file: UploadFile, ctx: ContextDep, principal: PrincipalDep) -> Envelope[UploadOut]:
    limit = ctx.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise BadRequest(f"参数错误:文件超过 {limit // (1024 * 1024)} MB 上限")
    try:
        info = await anyio.to_thread.run_sync(sniff_image, data)
    except NotAnImage as exc:
        raise BadRequest(f"参数错误:上传的文件不是有效图片({exc})") from exc
    day = local(utcnow(), ctx.settings.timezone)
    key = f"uploads/{day:%Y/%m/%d}/{secrets.token_hex(16)}.{info.ext}"
    await ctx.storage.put(key, data, info.content_type)
    try:
        async with ctx.db.write() as session:
            session.add(
                StoredFile(
                    user_id=principal.user_id,
                    key=key,
                    content_type=info.content_type,
                    size=len(data),
                )
            )
    except BaseException:
        await ctx.storage.delete(key)  # no file without its row
        raise
    return ok(
        UploadOut(
            url=ctx.storage.url(key),
            key=key,
            size=len(data),
            contentType=info.content_type,
            width=info.width,
            height=info.height,
        )
    )


@router.get("/files/{key:path}", include_in_schema=False)
async def serve_file(key: str, ctx: ContextDep) -> Response:
    where = await ctx.storage.locate(key)
    if where is None:
        raise NotFound("文件不存在")
    if isinstance(where, str):
        # Object storage: our URL is permanent, the signed one it points to is not.
        return RedirectResponse(where, status_code=307, headers={"Cache-Control": "no-store"})
    return FileResponse(where, headers={"Cache-Control": "public, max-age=31536000, immutable"})
