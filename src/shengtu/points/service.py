"""The ledger: every change of a balance is one conditional UPDATE plus one ledger row,
in the caller's transaction. No read-modify-write in Python."""

from __future__ import annotations

from sqlalchemy import BigInteger, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.db import Conn, Database, add, run
from shengtu.errors import BadRequest, InsufficientPoints, NotFound
from shengtu.models.points import PointsAccount, PointsLedger

# The note of the sign-up bonus (SHENGTU_REGISTER_POINTS): points every new account gets,
# which make no one a paying user (events/service.py).
SIGNUP_BONUS_NOTE = "开户赠送"


def account_not_found() -> NotFound:
    return NotFound("积分账户不存在")


async def open_account(session: AsyncSession, user_id: int) -> None:
    session.add(PointsAccount(user_id=user_id, balance=0, version=0))
    await session.flush()


async def debit(session: Conn, user_id: int, cost: int) -> int:
    """Take ``cost`` off the balance if it covers it; the balance after. No ledger row yet."""
    return await _move_balance(session, user_id, -cost)


_DELTA = bindparam("delta", type_=BigInteger)
_CREDIT = (
    update(PointsAccount)
    .where(PointsAccount.user_id == bindparam("account"))
    .values(
        balance=PointsAccount.balance + _DELTA,
        version=PointsAccount.version + 1,
    )
)
_DEBIT = _CREDIT.where(PointsAccount.balance >= -_DELTA)
_BALANCE = select(PointsAccount.balance).where(PointsAccount.user_id == bindparam("account"))


async def _move_balance(session: Conn, user_id: int, delta: int) -> int:
    """Move the balance by ``delta`` unless it would go below zero; return the new balance."""
    key = {"account": user_id, "delta": delta}
    if (await run(session, _DEBIT if delta < 0 else _CREDIT, key)).rowcount != 1:
        current = (await run(session, _BALANCE, key)).scalar()
        if current is None:
            raise account_not_found()
        raise InsufficientPoints(f"积分不足:需要 {-delta} 积分,当前余额 {current} 积分")
    # The row is locked by our UPDATE until commit, so this read is our own balance.
    balance = (await run(session, _BALANCE, key)).scalar()
    assert balance is not None
    return int(balance)


async def record(
    session: Conn,
    user_id: int,
    delta: int,
    balance_after: int,
    kind: str,
    task_no: str | None = None,
    note: str | None = None,
) -> None:
    await add(
        session,
        PointsLedger(
            user_id=user_id,
            delta=delta,
            balance_after=balance_after,
            kind=kind,
            task_no=task_no,
            note=note,
        ),
    )


async def _apply(
    session: Conn,
    user_id: int,
    delta: int,
    kind: str,
    *,
    task_no: str | None = None,
    note: str | None = None,
) -> int:
    balance = await _move_balance(session, user_id, delta)
    await record(session, user_id, delta, balance, kind, task_no, note)
    return balance


async def grant(session: Conn, user_id: int, amount: int, note: str | None = None) -> int:
    return await credit(session, user_id, amount, "grant", note)


async def credit(
    session: Conn,
    user_id: int,
    amount: int,
    kind: str,
    note: str | None = None,
    *,
    task_no: str | None = None,
) -> int:
    """Add ``amount`` points under ledger ``kind`` (a grant, a redeemed code, a paid
    order: ``task_no`` its number, so the ledger takes it once)."""
    if amount <= 0:
        raise BadRequest("发放积分须为正整数")
    return await _apply(session, user_id, amount, kind, task_no=task_no, note=note)


async def take_back(
    session: Conn, user_id: int, amount: int, kind: str, task_no: str, note: str
) -> int:
    """Take ``amount`` points off (a refunded top-up), once per ``task_no`` and ``kind``;
    402 if the balance no longer holds them."""
    if amount <= 0:
        raise BadRequest("收回积分须为正整数")
    return await _apply(session, user_id, -amount, kind, task_no=task_no, note=note)


async def adjust(session: Conn, user_id: int, delta: int, note: str | None = None) -> int:
    if delta == 0:
        raise BadRequest("调整积分不能为 0")
    return await _apply(session, user_id, delta, "adjust", note=note)


async def refund(session: Conn, user_id: int, amount: int, task_no: str) -> int:
    return await _apply(session, user_id, amount, "refund", task_no=task_no, note="任务失败退还")


async def give_back_undelivered(
    session: Conn, user_id: int, amount: int, task_no: str, missing: int
) -> int:
    """A completed task's points for the ``missing`` pictures its upstream did not make."""
    return await _apply(
        session,
        user_id,
        amount,
        "undelivered",
        task_no=task_no,
        note=f"少交付 {missing} 张图片退还",
    )


async def balance(session: AsyncSession, user_id: int) -> PointsAccount:
    account = await session.get(PointsAccount, user_id)
    if account is None:
        raise account_not_found()
    return account


async def records(
    session: AsyncSession, user_id: int, page: int, size: int
) -> tuple[list[PointsLedger], int]:
    total = await session.scalar(
        select(func.count()).select_from(PointsLedger).where(PointsLedger.user_id == user_id)
    )
    rows = await session.scalars(
        select(PointsLedger)
        .where(PointsLedger.user_id == user_id)
        .order_by(PointsLedger.id.desc())
        .offset((page - 1) * size)
        .limit(size)
    )
    return list(rows), int(total or 0)


async def balance_of(db: Database, user_id: int) -> PointsAccount:
    """:func:`balance`, in a read of its own."""
    async with db.read() as session:
        return await balance(session, user_id)


async def records_of(
    db: Database, user_id: int, page: int, size: int
) -> tuple[list[PointsLedger], int]:
    """:func:`records`, in a read of its own."""
    async with db.read() as session:
        return await records(session, user_id, page, size)
