"""Stored files: uploads (quota, re-encoding), which keys are ours, and the sweeps.

A file's row is the authority: ``/files/<key>`` serves only a key the platform stored (an
upload's row, or the task whose result it is), and a sweep deletes a row first, with a
guarded DELETE or UPDATE that exactly one of several racing sweeps wins, and only the
winner deletes the file. A crash between the two leaves an orphan file, never a row whose
file is gone.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Executable, Select, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.context import AppContext
from shengtu.db import Conn, UtcDateTime, run, utcnow
from shengtu.errors import BadRequest, Gone, NotFound, TooManyRequests
from shengtu.logs import get_logger
from shengtu.models.points import PointsAccount
from shengtu.models.storage import StoredFile
from shengtu.models.tasks import AiTask
from shengtu.storage.images import ImageInfo, NotAnImage, reencoded
from shengtu.timefmt import local, midnight_utc

log = get_logger("shengtu.storage")

SWEEP_BATCH = 500
UPLOADS, RESULTS = "uploads/", "results/"


@dataclass(frozen=True)
class Uploaded:
    key: str
    size: int
    info: ImageInfo


async def _quota_left(session: AsyncSession, ctx: AppContext, user_id: int) -> None:
    """429 when the user's uploads of today (the platform's wall day) are at the quota."""
    settings = ctx.settings
    since = midnight_utc(utcnow(), settings.timezone)
    count, size = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(StoredFile.size), 0)).where(
                StoredFile.user_id == user_id, StoredFile.created_at >= since
            )
        )
    ).one()
    if settings.upload_daily_count and count >= settings.upload_daily_count:
        raise TooManyRequests(
            f"今日上传次数已达上限 {settings.upload_daily_count} 次,请明天再试", retry_after=3600
        )
    if settings.upload_daily_bytes and size >= settings.upload_daily_bytes:
        mib = settings.upload_daily_bytes // (1024 * 1024)
        raise TooManyRequests(f"今日上传总量已达上限 {mib} MB,请明天再试", retry_after=3600)


async def upload(ctx: AppContext, user_id: int, data: bytes) -> Uploaded:
    """Store a reference picture, re-encoded (no metadata), within the user's daily quota."""
    async with ctx.db.read() as session:
        await _quota_left(session, ctx, user_id)
    day = local(utcnow(), ctx.settings.timezone)
    try:
        stored = await ctx.storage.put_checked(
            data,
            reencoded(ctx.settings.max_image_pixels),
            lambda kind: f"{UPLOADS}{day:%Y/%m/%d}/{secrets.token_hex(16)}.{kind.ext}",
            ctx.decoding,
        )
    except NotAnImage as exc:
        raise BadRequest(f"参数错误:上传的文件不是有效图片({exc})") from exc
    try:
        async with ctx.db.write() as session:
            # The points row is the user's lock (as in a submit): racing uploads of one
            # user count one after another, so the quota is exact.
            await session.execute(
                select(PointsAccount.user_id)
                .where(PointsAccount.user_id == user_id)
                .with_for_update()
            )
            await _quota_left(session, ctx, user_id)
            session.add(
                StoredFile(
                    user_id=user_id,
                    key=stored.key,
                    content_type=stored.info.content_type,
                    size=stored.size,
                )
            )
    except BaseException:
        await ctx.storage.delete(stored.key)  # no file without its row
        raise
    return Uploaded(stored.key, stored.size, stored.info)


_MARK_USED = (
    update(StoredFile)
    .where(StoredFile.user_id == bindparam("owner"), StoredFile.key == bindparam("file_key"))
    .values(used_at=func.coalesce(StoredFile.used_at, bindparam("now", type_=UtcDateTime)))
)


async def mark_used(session: Conn, user_id: int, keys: list[str]) -> None:
    """Record that a task uses these uploads of the user's, in the task's transaction:
    the sweep then keeps them. 400 when one is gone (swept a moment ago, or not theirs)."""
    if not keys:
        return
    wanted = sorted(set(keys))
    now = utcnow()
    marked = 0
    for key in wanted:
        used = {"owner": user_id, "file_key": key, "now": now}
        marked += (await run(session, _MARK_USED, used)).rowcount
    if marked != len(wanted):
        raise BadRequest("参数错误:参考图不存在、已过期清理或不属于当前用户,请重新上传")


FileState = Literal["ok", "expired", "unknown"]


def task_no_of_result(key: str) -> str | None:
    """``results/YYYY/MM/DD/<taskNo>-<random>.<ext>`` → the task number."""
    name = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    task_no, _, random_part = name.rpartition("-")
    return task_no or None if random_part else None


def result_keys(first: str | None, results: list[dict[str, str]] | None) -> list[str]:
    """Every picture a task keeps: the one of ``result_key``, and those of a task of
    several pictures (``results``)."""
    keys = [r["key"] for r in results or () if r.get("key")]
    return keys or ([first] if first else [])


async def file_state(session: AsyncSession, key: str) -> FileState:
    """Whether ``key`` is one the platform stored and still keeps."""
    if key.startswith(UPLOADS):
        found = await session.scalar(select(StoredFile.id).where(StoredFile.key == key))
        return "ok" if found is not None else "unknown"
    if key.startswith(RESULTS):
        task_no = task_no_of_result(key)
        if task_no is None:
            return "unknown"
        row = (
            await session.execute(
                select(AiTask.result_key, AiTask.results, AiTask.result_expired_at).where(
                    AiTask.task_no == task_no
                )
            )
        ).first()
        if row is None or key not in result_keys(row[0], row[1]):
            return "unknown"
        return "expired" if row[2] is not None else "ok"
    return "unknown"


@dataclass
class SweepResult:
    uploads_deleted: int = 0
    results_expired: int = 0


async def _claim_and_delete(
    ctx: AppContext,
    candidates: Select[*tuple[Any, ...]],
    claim: Callable[[int], Executable],
    files: Callable[[Any], list[str]] = lambda row: [row[1]] if row[1] is not None else [],
) -> int:
    """Batch by batch: read candidate rows (an id first; ``files`` names a row's files),
    claim each with one guarded statement, and delete the files of the rows this call won.
    Of racing sweeps each row is won once, so each file is deleted once; the count (of rows with
    files) is this call's."""
    done = 0
    while True:
        async with ctx.db.read() as session:
            rows = (await session.execute(candidates.limit(SWEEP_BATCH))).all()
        if not rows:
            return done
        won: list[list[str]] = []
        async with ctx.db.write() as session:
            for row in rows:
                result = await session.execute(claim(row[0]))
                if getattr(result, "rowcount", 0) == 1 and files(row):
                    won.append(files(row))
        for keys in won:
            for key in keys:
                await ctx.storage.delete(key)
        done += len(won)
        if len(rows) < SWEEP_BATCH:
            return done


async def sweep_uploads(ctx: AppContext, now: datetime | None = None) -> int:
    """Delete the uploads no task used within ``upload_unused_hours``; the count this call
    deleted (a racing sweep deletes the others)."""
    cutoff = (now or utcnow()) - timedelta(hours=ctx.settings.upload_unused_hours)
    return await _claim_and_delete(
        ctx,
        select(StoredFile.id, StoredFile.key)
        .where(StoredFile.used_at.is_(None), StoredFile.created_at < cutoff)
        .order_by(StoredFile.id),
        lambda file_id: delete(StoredFile).where(
            StoredFile.id == file_id, StoredFile.used_at.is_(None)
        ),
    )


async def sweep_results(ctx: AppContext, now: datetime | None = None) -> int:
    """Delete the pictures of tasks completed more than ``result_retention_days`` ago (none
    when it is 0); their tasks then say so and their URLs answer 410."""
    days = ctx.settings.result_retention_days
    if not days:
        return 0
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    return await _claim_and_delete(
        ctx,
        select(AiTask.id, AiTask.result_key, AiTask.results)
        .where(
            AiTask.completed_at < cutoff,
            AiTask.result_key.is_not(None),
            AiTask.result_expired_at.is_(None),
        )
        .order_by(AiTask.completed_at),
        lambda task_id: (
            update(AiTask)
            .where(AiTask.id == task_id, AiTask.result_expired_at.is_(None))
            .values(result_expired_at=now)
        ),
        lambda row: result_keys(row[1], row[2]),
    )


async def sweep(ctx: AppContext) -> SweepResult:
    result = SweepResult(await sweep_uploads(ctx), await sweep_results(ctx))
    if result.uploads_deleted or result.results_expired:
        log.info(
            "storage_swept",
            uploads_deleted=result.uploads_deleted,
            results_expired=result.results_expired,
        )
    return result


async def where_is(ctx: AppContext, key: str) -> Path | str:
    """Where ``/files/{key}`` sends a client: a local file or a URL to redirect to. Raises
    410 for a result past its keeping, 404 for a key the platform did not store or lost."""
    async with ctx.db.read() as session:
        state = await file_state(session, key)
    if state == "expired":
        raise Gone("图片已超过保存期限,已被删除")
    where = await ctx.storage.locate(key) if state == "ok" else None
    if where is None:
        raise NotFound("文件不存在")
    return where
