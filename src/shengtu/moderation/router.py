"""``/moderation/pictures/{key}``: a result picture not delivered yet, for whoever holds
its signed address (:mod:`shengtu.moderation.links`): the moderation service fetching
it, the operator reviewing it. A wrong, expired or deleted one answers 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, RedirectResponse, Response

from shengtu.context import ContextDep
from shengtu.errors import NotFound

router = APIRouter(tags=["moderation"])

# As /files/ serves pictures: never as a page; and never kept by a cache.
HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@router.get("/moderation/pictures/{key:path}", include_in_schema=False)
async def picture(
    key: str,
    ctx: ContextDep,
    expires: Annotated[int, Query()] = 0,
    signature: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    if not key.startswith("results/") or not ctx.moderation.links.valid(key, expires, signature):
        raise NotFound("文件不存在")
    where = await ctx.storage.locate(key)
    if where is None:
        raise NotFound("文件不存在")
    if isinstance(where, str):
        return RedirectResponse(where, status_code=307, headers=HEADERS)
    return FileResponse(where, headers=HEADERS)
