from __future__ import annotations

from fastapi import APIRouter, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel

from shengtu.api.envelope import Envelope, ok
from shengtu.auth.deps import PrincipalDep
from shengtu.context import ContextDep
from shengtu.errors import BadRequest
from shengtu.storage import service

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
    """Store a reference picture. It is drawn anew (no EXIF, no GPS position); an upload
    no task uses within ``SHENGTU_UPLOAD_UNUSED_HOURS`` is deleted; a daily quota applies."""
    limit = ctx.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise BadRequest(f"参数错误:文件超过 {limit // (1024 * 1024)} MB 上限")
    stored = await service.upload(ctx, principal.user_id, data)
    return ok(
        UploadOut(
            url=ctx.storage.url(stored.key),
            key=stored.key,
            size=stored.size,
            contentType=stored.info.content_type,
            width=stored.info.width,
            height=stored.info.height,
        )
    )


# Served files are pictures only, never a page: a sandbox CSP keeps a file that some
# browser sniffs as HTML from running script on our origin.
FILE_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@router.get("/files/{key:path}", include_in_schema=False)
async def serve_file(key: str, ctx: ContextDep) -> Response:
    where = await service.where_is(ctx, key)
    if isinstance(where, str):
        # Object storage: our URL is permanent, the signed one it points to is not.
        return RedirectResponse(
            where, status_code=307, headers={"Cache-Control": "no-store", **FILE_HEADERS}
        )
    return FileResponse(
        where, headers={"Cache-Control": "public, max-age=31536000, immutable", **FILE_HEADERS}
    )
