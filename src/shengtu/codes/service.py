"""Redemption codes: made in batches, each spent once, by one conditional UPDATE."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.codes.models import RedeemCode
from shengtu.db import utcnow
from shengtu.errors import BadRequest
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
