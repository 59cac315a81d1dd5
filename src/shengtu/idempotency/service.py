"""Idempotency keys, by Stripe's rules.

The first request with a key holds it while it runs; its task numbers are written in the
transaction that charged for them; its answer is kept. A retry with the same key and the
same parameters within 24 hours gets that answer (no new task, no new charge); with other
parameters, 422; while the first still runs, 409. A request that failed before charging
anything keeps nothing: its retry runs afresh. A key whose holder died after charging (its
lease ran out) is taken over with the tasks already charged, never charged again.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Integer, String, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from shengtu.context import AppContext
from shengtu.db import Conn, UtcDateTime, run, utcnow
from shengtu.errors import BadRequest, Conflict, ShengtuError
from shengtu.models.idempotency import IdempotencyKey

HEADER = "Idempotency-Key"
KEPT = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class Unprocessable(ShengtuError):
    code = 422
    default_message = "Idempotency-Key 已用于另一个不同参数的请求"


def in_flight(key: str) -> Conflict:
    return Conflict(f"使用 Idempotency-Key {key[:64]} 的上一个请求仍在处理中,请稍后重试")


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise BadRequest(f"参数错误:{HEADER} 须为 1 到 {MAX_KEY_LENGTH} 个可打印 ASCII 字符")
    return key


def fingerprint(route: str, params: Any) -> str:
    """The same parameters give the same print, whatever their order in the request."""
    canonical = json.dumps([route, params], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def file_digest(data: bytes) -> str:
    """An uploaded file's part of a request's print: the SHA-256 of its bytes, which
    hashlib reads in place (no copy; it lets go of the GIL while it hashes)."""
    return hashlib.sha256(data).hexdigest()


_HEX_CHUNK = 64 * 1024


def legacy_file_digest(data: bytes) -> str:
    """A file's digest as keys stored before :func:`file_digest` have it:
    ``fingerprint("file", data.hex())``, streamed 64 KiB at a time rather than through one
    hex copy of the whole file. Only to recognise such a key's retry (see
    ``openai_compat.router``); no key older than :data:`KEPT` is ever compared."""
    digest = hashlib.sha256(b'["file", "')
    view = memoryview(data)
    for start in range(0, len(view), _HEX_CHUNK):
        digest.update(binascii.hexlify(view[start : start + _HEX_CHUNK]))
    digest.update(b'"]')
    return digest.hexdigest()


_STORED = select(IdempotencyKey.fingerprint).where(
    IdempotencyKey.user_id == bindparam("user_id", type_=Integer),
    IdempotencyKey.key == bindparam("key", type_=String),
    IdempotencyKey.created_at >= bindparam("since", type_=UtcDateTime),
)


async def stored_print(ctx: AppContext, user_id: int, key: str) -> str | None:
    """The print of this user's ``key`` as its first request left it (answered, charged,
    or still running), or None: a key :func:`hold` would take as new."""
    row = await ctx.db.first(_STORED, {"user_id": user_id, "key": key, "since": utcnow() - KEPT})
    return None if row is None else str(row[0])


@dataclass(frozen=True)
class Held:
    """A key this request holds, or the answer kept for it."""

    id: int
    key: str
    # Charged for already (by this key's first request, which did not answer).
    task_nos: list[str] | None
    # The answer to replay: (HTTP status, JSON body).
    answer: tuple[int, Any] | None


async def hold(ctx: AppContext, user_id: int, key: str, print_: str, lease_seconds: float) -> Held:
    """Take ``key`` for this request, or say what its earlier request left."""
    check_key(key)
    now = utcnow()
    try:
        async with ctx.db.write() as session:
            row = await session.scalar(
                select(IdempotencyKey)
                .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
                .with_for_update()
            )
            if row is not None and row.created_at < now - KEPT:
                # Older than a day: a new key, as far as anyone can tell.
                await session.delete(row)
                await session.flush()
                row = None
            if row is None:
                row = IdempotencyKey(
                    user_id=user_id,
                    key=key,
                    fingerprint=print_,
                    locked_until=now + timedelta(seconds=lease_seconds),
                    created_at=now,
                )
                session.add(row)
                await session.flush()
                return Held(row.id, key, None, None)
            if row.fingerprint != print_:
                raise Unprocessable(
                    f"{HEADER} {key[:64]} 已用于另一个参数不同的请求;新请求请换一个新的 Key"
                )
            if row.response_status is not None and row.response_body is not None:
                return Held(
                    row.id, key, row.task_nos, (row.response_status, json.loads(row.response_body))
                )
            if row.locked_until is not None and row.locked_until > now:
                raise in_flight(key)
            row.locked_until = now + timedelta(seconds=lease_seconds)
            return Held(row.id, key, row.task_nos, None)
    except IntegrityError as exc:
        # Another request inserted this key a moment before us and still holds it.
        raise in_flight(key) from exc


_RECORD = (
    update(IdempotencyKey)
    .where(IdempotencyKey.id == bindparam("key_id"))
    .values(task_nos=bindparam("numbers", type_=IdempotencyKey.__table__.c.task_nos.type))
)


def recorder(held: Held) -> Callable[[Conn, list[str]], Awaitable[None]]:
    """What the submit calls in its charging transaction: these tasks are this key's."""

    async def record(session: Conn, task_nos: list[str]) -> None:
        await run(session, _RECORD, {"key_id": held.id, "numbers": task_nos})

    return record


async def keep(ctx: AppContext, held: Held, status: int, body: Any) -> None:
    """The answer every retry with this key gets from now on."""
    async with ctx.db.write() as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == held.id)
            .values(
                response_status=status,
                response_body=json.dumps(body, ensure_ascii=False),
                locked_until=None,
            )
        )


async def let_go(ctx: AppContext, held: Held) -> None:
    """The request ended without an answer to keep: forget the key unless it charged."""
    async with ctx.db.write() as session:
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.id == held.id, IdempotencyKey.task_nos.is_(None)
            )
        )
        await session.execute(
            update(IdempotencyKey).where(IdempotencyKey.id == held.id).values(locked_until=None)
        )


async def prune(ctx: AppContext) -> int:
    async with ctx.db.write() as session:
        result = await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - KEPT)
        )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class Outcome:
    status: int
    body: Any
    # False: an answer not to replay (the tasks still run); a retry picks them up again.
    final: bool = True


async def once(
    ctx: AppContext,
    user_id: int,
    key: str,
    print_: str,
    lease_seconds: float,
    run: Callable[[Held], Awaitable[Outcome]],
) -> tuple[Outcome, bool]:
    """``run`` under ``key``, or the answer its first run kept; and whether it is a replay.

    ``run`` gets the key as held: with ``task_nos`` when an earlier run charged for tasks
    and did not answer, which it must answer for instead of submitting again."""
    held = await hold(ctx, user_id, key, print_, lease_seconds)
    if held.answer is not None:
        return Outcome(*held.answer), True
    try:
        outcome = await run(held)
    except BaseException:
        await asyncio.shield(let_go(ctx, held))
        raise
    if outcome.final:
        await keep(ctx, held, outcome.status, outcome.body)
    else:
        await let_go(ctx, held)
    return outcome, False


def replay_headers(replayed: bool) -> dict[str, str]:
    return {"Idempotent-Replayed": "true"} if replayed else {}
