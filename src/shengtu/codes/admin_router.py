"""``/admin/codes``: redemption code batches (admins only)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from shengtu.api.envelope import Envelope, Page, PageNo, PageSize, ok
from shengtu.api.spreadsheet import csv_file
from shengtu.auth.deps import AdminDep
from shengtu.codes import admin_service as service
from shengtu.codes.schemas import (
    CodeBatchCreate,
    CodeBatchOut,
    CodeDisable,
    CodeOut,
    CodesDisabled,
    CodeState,
)
from shengtu.codes.service import state_of
from shengtu.context import ContextDep
from shengtu.db import utcnow
from shengtu.models.codes import RedeemCode
from shengtu.timefmt import fmt, to_utc

router = APIRouter(tags=["admin: codes"])

Batch = Annotated[str | None, Query(max_length=64)]


def code_out(code: RedeemCode, tz: str) -> CodeOut:
    return CodeOut(
        id=code.id,
        code=code.code,
        batch=code.batch,
        points=code.points,
        note=code.note,
        state=state_of(code, utcnow()),
        expireTime=fmt(code.expires_at, tz),
        usedBy=code.used_by,
        usedTime=fmt(code.used_at, tz),
        createTime=fmt(code.created_at, tz) or "",
    )


@router.post("/admin/codes", response_model=Envelope[CodeBatchOut])
async def create_batch(
    body: CodeBatchCreate, ctx: ContextDep, admin: AdminDep
) -> Envelope[CodeBatchOut]:
    """A batch of codes, each worth ``points`` once (160 random bits each)."""
    tz = ctx.settings.timezone
    expires = to_utc(body.expireTime, tz) if body.expireTime else None
    codes = await service.create_batch(
        ctx.db, admin, body.count, body.points, note=body.note, expires_at=expires, tz=tz
    )
    return ok(
        CodeBatchOut(
            batch=codes[0].batch,
            count=len(codes),
            points=body.points,
            codes=[c.code for c in codes],
        )
    )


@router.get("/admin/codes", response_model=Envelope[Page[CodeOut]])
async def list_codes(
    ctx: ContextDep,
    _: AdminDep,
    batch: Batch = None,
    state: CodeState | None = None,
    page: PageNo = 1,
    size: PageSize = 20,
) -> Envelope[Page[CodeOut]]:
    tz = ctx.settings.timezone
    rows, total = await service.find(ctx.db, batch=batch, state=state, page=page, size=size)
    return ok(Page[CodeOut].of([code_out(c, tz) for c in rows], total, page, size))


@router.post("/admin/codes/disable", response_model=Envelope[CodesDisabled])
async def disable_codes(
    body: CodeDisable, ctx: ContextDep, admin: AdminDep
) -> Envelope[CodesDisabled]:
    """Disable unused codes by id, or every unused code of a batch."""
    count = await service.disable(ctx.db, admin, body.ids, body.batch)
    return ok(CodesDisabled(disabled=count))


CSV_COLUMNS = (
    "code",
    "batch",
    "points",
    "state",
    "note",
    "expireTime",
    "usedBy",
    "usedTime",
    "createTime",
)


@router.get(
    "/admin/codes/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "兑换码 CSV(UTF-8,带 BOM)"}},
)
async def export_codes(
    ctx: ContextDep, _: AdminDep, batch: Batch = None, state: CodeState | None = None
) -> StreamingResponse:
    tz = ctx.settings.timezone

    async def chunks() -> AsyncIterator[list[tuple[object, ...]]]:
        # The read ends when the response's stream is closed (at its end, or when the server
        # closes it for a client gone mid-file).
        async with aclosing(service.export(ctx.db, batch=batch, state=state)) as found:
            async for chunk in found:
                # In CSV_COLUMNS' order, as code_out would give them.
                yield [
                    (
                        c.code,
                        c.batch,
                        c.points,
                        c.state,
                        c.note,
                        fmt(c.expires_at, tz),
                        c.used_by,
                        fmt(c.used_at, tz),
                        fmt(c.created_at, tz) or "",
                    )
                    for c in chunk
                ]

    name = "codes-" + re.sub(r"[^A-Za-z0-9_.-]", "_", batch or "all") + ".csv"
    return StreamingResponse(
        csv_file(CSV_COLUMNS, chunks()),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
