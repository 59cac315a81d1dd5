"""Who counts as a free account, for the WebSocket pools (events/router.py)."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.db import Database
from shengtu.models.points import PointsLedger
from shengtu.points.service import SIGNUP_BONUS_NOTE


async def is_free_account(session: AsyncSession, user_id: int) -> bool:
    """True unless the user was ever credited points other than the sign-up bonus: an
    operator's grant or positive adjustment, or a redeemed code worth points (codes are
    what users buy). Refunds give back the user's own points and do not count; nor does a
    balance, which a sign-up bonus gives every account."""
    credited = await session.scalar(
        select(PointsLedger.id)
        .where(
            PointsLedger.user_id == user_id,
            PointsLedger.delta > 0,
            PointsLedger.kind != "refund",
            # (A NULL note is no bonus: spelled out, as NULL = 'x' is not false.)
            or_(
                PointsLedger.kind != "grant",
                PointsLedger.note.is_(None),
                PointsLedger.note != SIGNUP_BONUS_NOTE,
            ),
        )
        .limit(1)
    )
    return credited is None


async def free_account(db: Database, user_id: int) -> bool:
    """:func:`is_free_account`, in a read of its own."""
    async with db.read() as session:
        return await is_free_account(session, user_id)
