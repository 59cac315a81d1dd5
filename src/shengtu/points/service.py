"""The ledger: every change of a balance is one conditional UPDATE plus one ledger row,
in the caller's transaction. No read-modify-write in Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import BigInteger, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.db import Conn, add, run
from shengtu.errors import BadRequest, InsufficientPoints, NotFound
from shengtu.points.models import PointsAccount, PointsLedger


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
    session: Conn, user_id: int, amount: int, kind: str, note: str | None = None
) -> int:
    """Add ``amount`` points under ledger ``kind`` (a grant, a redeemed code)."""
    if amount <= 0:
        raise BadRequest("发放积分须为正整数")
    return await _apply(session, user_id, amount, kind, note=note)


async def adjust(session: Conn, user_id: int, delta: int, note: str | None = None) -> int:
    if delta == 0:
        raise BadRequest("调整积分不能为 0")
    return await _apply(session, user_id, delta, "adjust", note=note)


async def refund(session: Conn, user_id: int, amount: int, task_no: str) -> int:
    return await _apply(session, user_id, amount, "refund", task_no=task_no, note="任务失败退还")


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


@dataclass
class AuditCheck:
    name: str
    checked: int
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


async def audit(session: AsyncSession, stuck_before: datetime) -> list[AuditCheck]:
    """Check every ledger invariant of DESIGN against the database."""
    from shengtu.tasks.machine import ACTIVE, Status
    from shengtu.tasks.models import AiTask

    checks: list[AuditCheck] = []

    accounts = (await session.execute(select(PointsAccount.user_id, PointsAccount.balance))).all()
    sums = dict(
        (
            await session.execute(
                select(PointsLedger.user_id, func.sum(PointsLedger.delta)).group_by(
                    PointsLedger.user_id
                )
            )
        )
        .tuples()
        .all()
    )
    c = AuditCheck("余额 = 流水之和 (balance = Σ delta)", len(accounts))
    for user_id, bal in accounts:
        if int(sums.get(user_id) or 0) != bal:
            c.violations.append(f"用户 {user_id}: 余额 {bal} ≠ 流水之和 {sums.get(user_id) or 0}")
    checks.append(c)

    c = AuditCheck("余额不为负 (balance ≥ 0)", len(accounts))
    c.violations += [f"用户 {u}: 余额 {b}" for u, b in accounts if b < 0]
    checks.append(c)

    ledger = (
        await session.execute(
            select(PointsLedger.user_id, PointsLedger.delta, PointsLedger.balance_after).order_by(
                PointsLedger.user_id, PointsLedger.id
            )
        )
    ).all()
    c = AuditCheck("流水余额连续 (balance_after chain)", len(ledger))
    running: dict[int, int] = {}
    for user_id, delta, after in ledger:
        running[user_id] = running.get(user_id, 0) + delta
        if running[user_id] != after:
            c.violations.append(f"用户 {user_id}: 流水后余额 {after} ≠ 累计 {running[user_id]}")
            running[user_id] = after
    checks.append(c)

    tasks = (
        await session.execute(
            select(AiTask.task_no, AiTask.status, AiTask.points_cost, AiTask.deadline_at)
        )
    ).all()
    entries: dict[tuple[str, str], list[int]] = {}
    for task_no, kind, delta in (
        await session.execute(
            select(PointsLedger.task_no, PointsLedger.kind, PointsLedger.delta).where(
                PointsLedger.task_no.is_not(None)
            )
        )
    ).all():
        if task_no is not None:
            entries.setdefault((task_no, kind), []).append(delta)

    consume = AuditCheck("每个任务恰有一笔扣费 (one consume per task)", len(tasks))
    refund_c = AuditCheck("失败任务恰有一笔退款,其余没有 (one refund per failed task)", len(tasks))
    stuck = AuditCheck("没有超过截止时间仍未结束的任务 (no stuck task)", len(tasks))
    known = set()
    for task_no, status, cost, deadline in tasks:
        known.add(task_no)
        charges = entries.get((task_no, "consume"), [])
        if charges != [-cost]:
            consume.violations.append(f"任务 {task_no}: 扣费 {charges},应为 [{-cost}]")
        refunds = entries.get((task_no, "refund"), [])
        want = [cost] if status == Status.FAILED else []
        if refunds != want:
            refund_c.violations.append(f"任务 {task_no} ({status}): 退款 {refunds},应为 {want}")
        if status in ACTIVE and deadline < stuck_before:
            stuck.violations.append(f"任务 {task_no}: 状态 {status},截止 {deadline} 已过")
    orphans = sorted({t for (t, _k) in entries if t not in known})
    consume.violations += [f"流水引用了不存在的任务 {t}" for t in orphans]
    checks += [consume, refund_c, stuck]
    return checks
