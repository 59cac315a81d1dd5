"""Redemption codes: made in batches, each spent once, by one conditional UPDATE."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.codes.schemas import CodeState
from shengtu.db import Database, utcnow
from shengtu.errors import BadRequest
from shengtu.models.accounts import User
from shengtu.models.codes import RedeemCode
from shengtu.points import service as points

CODE_PREFIX = "ST"
CODE_BYTES = 20  # 160 bits of randomness
MAX_BATCH = 10_000


def new_code() -> str:
    return CODE_PREFIX + base64.b32encode(secrets.token_bytes(CODE_BYTES)).decode().rstrip("=")


def normalise(code: str) -> str:
    return code.strip().upper().replace("-", "").replace(" ", "")


async def create_batch(
    session: AsyncSession,
    count: int,
    amount: int,
    *,
    note: str | None = None,
    expires_at: datetime | None = None,
    batch: str | None = None,
) -> list[RedeemCode]:
    if not 1 <= count <= MAX_BATCH:
        raise BadRequest(f"参数错误:每批兑换码数量须为 1-{MAX_BATCH}")
    if amount < 0:
        raise BadRequest("参数错误:兑换码积分不能为负")
    batch = batch or f"B{utcnow():%Y%m%d%H%M%S}-{secrets.token_hex(2)}"
    codes = [
        RedeemCode(code=new_code(), batch=batch, points=amount, note=note, expires_at=expires_at)
        for _ in range(count)
    ]
    session.add_all(codes)
    await session.flush()
    return codes


async def spend(session: AsyncSession, code: str, user_id: int) -> RedeemCode:
    """Mark ``code`` used by ``user_id``; of racing spenders exactly one wins (the UPDATE
    is guarded by ``used_at IS NULL``). Raises 400 with the reason otherwise."""
    code = normalise(code)
    now = utcnow()
    result = await session.execute(
        update(RedeemCode)
        .where(
            RedeemCode.code == code,
            RedeemCode.used_at.is_(None),
            RedeemCode.disabled.is_(False),
            or_(RedeemCode.expires_at.is_(None), RedeemCode.expires_at > now),
        )
        .values(used_by=user_id, used_at=now)
    )
    row = await session.scalar(select(RedeemCode).where(RedeemCode.code == code))
    if getattr(result, "rowcount", 0) != 1 or row is None:
        if row is None:
            raise BadRequest("兑换码无效")
        if row.used_at is not None:
            raise BadRequest("兑换码已被使用")
        if row.disabled:
            raise BadRequest("兑换码已停用")
        raise BadRequest("兑换码已过期")
    return row


async def redeem(session: AsyncSession, code: str, user_id: int) -> tuple[RedeemCode, int | None]:
    """Spend ``code`` and credit its points (ledger kind ``redeem``); the new balance, or
    None when the code carries no points."""
    spent = await spend(session, code, user_id)
    if spent.points <= 0:
        return spent, None
    balance = await points.credit(
        session, user_id, spent.points, "redeem", note=f"兑换码 {spent.code[:8]}…"
    )
    return spent, balance


async def is_new_account(session: AsyncSession, user_id: int, hours: float) -> bool:
    """Whether the account is younger than ``hours``: its failed redemptions count in the
    pool its address gives new accounts (auth/limits.py). A missing user counts as new."""
    created = await session.scalar(select(User.created_at).where(User.id == user_id))
    return created is None or created > utcnow() - timedelta(hours=hours)


def state_of(code: RedeemCode, now: datetime) -> CodeState:
    return code_state(code.used_at, code.disabled, code.expires_at, now)


def code_state(
    used_at: datetime | None, disabled: bool, expires_at: datetime | None, now: datetime
) -> CodeState:
    if used_at is not None:
        return "used"
    if disabled:
        return "disabled"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "unused"


def _state_filter(state: str, now: datetime) -> ColumnElement[bool]:
    unused = RedeemCode.used_at.is_(None)
    live = or_(RedeemCode.expires_at.is_(None), RedeemCode.expires_at > now)
    if state == "used":
        return RedeemCode.used_at.is_not(None)
    if state == "disabled":
        return and_(unused, RedeemCode.disabled.is_(True))
    if state == "expired":
        return and_(unused, RedeemCode.disabled.is_(False), RedeemCode.expires_at <= now)
    return and_(unused, RedeemCode.disabled.is_(False), live)


def _where(batch: str | None, state: str | None, now: datetime) -> list[ColumnElement[bool]]:
    where = []
    if batch:
        where.append(RedeemCode.batch == batch)
    if state:
        where.append(_state_filter(state, now))
    return where


async def find(
    session: AsyncSession, *, batch: str | None, state: str | None, page: int, size: int
) -> tuple[list[RedeemCode], int]:
    where = _where(batch, state, utcnow())
    total = await session.scalar(select(func.count()).select_from(RedeemCode).where(*where))
    rows = await session.scalars(
        select(RedeemCode)
        .where(*where)
        .order_by(RedeemCode.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    return list(rows), int(total or 0)


# An export's columns, read as plain rows: a campaign's file has a million codes, and an
# ORM object and a response model each took about 40 µs a code (25 s for 665,000).
EXPORTED = (
    RedeemCode.code,
    RedeemCode.batch,
    RedeemCode.points,
    RedeemCode.used_at,
    RedeemCode.disabled,
    RedeemCode.note,
    RedeemCode.expires_at,
    RedeemCode.used_by,
    RedeemCode.created_at,
)


class ExportedCode(NamedTuple):
    code: str
    batch: str
    points: int
    state: CodeState
    note: str | None
    expires_at: datetime | None
    used_by: int | None
    used_at: datetime | None
    created_at: datetime


async def stream(
    session: AsyncSession, *, batch: str | None, state: str | None
) -> AsyncIterator[list[ExportedCode]]:
    """Every matching code, oldest first, a thousand at a time, with its state as of the
    start of the read (the moment the filter by state is taken at)."""
    now = utcnow()
    result = await session.stream(
        select(*EXPORTED)
        .where(*_where(batch, state, now))
        .order_by(RedeemCode.id)
        .execution_options(yield_per=1000)
    )
    async for rows in result.partitions():
        yield [_exported(row, now) for row in rows]


def _exported(row: Any, now: datetime) -> ExportedCode:
    code, batch, worth, used_at, disabled, note, expires, used_by, created = row
    state = code_state(used_at, disabled, expires, now)
    return ExportedCode(code, batch, worth, state, note, expires, used_by, used_at, created)


async def disable(session: AsyncSession, ids: list[int] | None, batch: str | None) -> int:
    """Disable unused codes (by id, or a whole batch); a used code stays as it was."""
    if not ids and not batch:
        raise BadRequest("参数错误:请提供要停用的兑换码 ids 或批次 batch")
    where: list[ColumnElement[bool]] = [
        RedeemCode.used_at.is_(None),
        RedeemCode.disabled.is_(False),
    ]
    if ids:
        where.append(RedeemCode.id.in_(ids))
    if batch:
        where.append(RedeemCode.batch == batch)
    result = await session.execute(update(RedeemCode).where(*where).values(disabled=True))
    return int(getattr(result, "rowcount", 0) or 0)


# For the routes that spend a code (/user/points/redeem, a sign-up with one): they open
# no transaction and hold no session.


async def account_is_new(db: Database, user_id: int, hours: float) -> bool:
    """:func:`is_new_account`, in a read of its own."""
    async with db.read() as session:
        return await is_new_account(session, user_id, hours)


async def redeem_for(db: Database, code: str, user_id: int) -> tuple[RedeemCode, int | None]:
    """:func:`redeem`, committed before it returns."""
    async with db.write() as session:
        return await redeem(session, code, user_id)


def spent_at_sign_up(code: str) -> Callable[[AsyncSession, User], Awaitable[None]]:
    """A sign-up's ``on_create`` (accounts.service.create_user): ``code`` spent and its
    points credited in the transaction that makes the user, or no user at all."""

    async def spend_code(session: AsyncSession, user: User) -> None:
        await redeem(session, code, user.id)

    return spend_code
