"""The ledger's invariants (DESIGN.md, "The ledger"), checked against the database: what
``shengtu audit`` prints, ``/admin/ledger/audit`` answers and the tests run after they touch
points. A room of its own: it reads the tasks, the payments and the ledger, which are rooms
that must not import each other back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu.db import Database, utcnow
from shengtu.models.payments import CREDITED, PaymentOrder
from shengtu.models.points import PointsAccount, PointsLedger
from shengtu.models.tasks import ACTIVE, AiTask, Status


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
            select(
                AiTask.task_no,
                AiTask.status,
                AiTask.points_cost,
                AiTask.pictures,
                AiTask.delivered,
                AiTask.deadline_at,
            )
        )
    ).all()
    entries: dict[tuple[str, str], list[int]] = {}
    topups: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for task_no, kind, delta, user_id in (
        await session.execute(
            select(
                PointsLedger.task_no, PointsLedger.kind, PointsLedger.delta, PointsLedger.user_id
            ).where(PointsLedger.task_no.is_not(None))
        )
    ).all():
        if task_no is None:
            continue
        if kind in TOPUP_KINDS:  # a payment order's, not a task's
            topups.setdefault((task_no, kind), []).append((user_id, delta))
        else:
            entries.setdefault((task_no, kind), []).append(delta)

    consume = AuditCheck("每个任务恰有一笔扣费 (one consume per task)", len(tasks))
    # A failed task has one refund of all it was charged; a completed one gives back the
    # pictures it did not deliver, so that for every ended task
    # charged − refunded = delivered × the price of one.
    refund_c = AuditCheck(
        "退还与交付相符:失败任务全额退款一笔,少交付的退还缺少的张数 "
        "(charged − refunded = delivered × each)",
        len(tasks),
    )
    stuck = AuditCheck("没有超过截止时间仍未结束的任务 (no stuck task)", len(tasks))
    known = set()
    for task_no, status, cost, pictures, delivered, deadline in tasks:
        known.add(task_no)
        charges = entries.get((task_no, "consume"), [])
        if charges != [-cost]:
            consume.violations.append(f"任务 {task_no}: 扣费 {charges},应为 [{-cost}]")
        refunds = entries.get((task_no, "refund"), [])
        want = [cost] if status == Status.FAILED else []
        if refunds != want:
            refund_c.violations.append(f"任务 {task_no} ({status}): 退款 {refunds},应为 {want}")
        short = entries.get((task_no, "undelivered"), [])
        problem = _delivery_problem(status, cost, pictures, delivered, refunds, short)
        if problem:
            refund_c.violations.append(f"任务 {task_no} ({status}): {problem}")
        if status in ACTIVE and deadline < stuck_before:
            stuck.violations.append(f"任务 {task_no}: 状态 {status},截止 {deadline} 已过")
    orphans = sorted({t for (t, _k) in entries if t not in known})
    consume.violations += [f"流水引用了不存在的任务 {t}" for t in orphans]
    checks += [consume, refund_c, stuck]
    checks += await _payments(session, topups)
    return checks


TOPUP_KINDS = ("topup", "topup_refund", "topup_restore")


def _order_of(task_no: str) -> str:
    """The order a top-up entry belongs to: ``{order}-{n}`` is its n-th refund attempt's."""
    return task_no.partition("-")[0]


async def _payments(
    session: AsyncSession, topups: dict[tuple[str, str], list[tuple[int, int]]]
) -> list[AuditCheck]:
    """Every credited order has exactly one ``topup`` entry of its points and bonus, to
    its user. Its refund attempts' entries (``topup_refund`` taken, ``topup_restore``
    given back when the provider refused; the first attempt's under the order's number,
    the n-th's under ``{order}-{n}``) are its user's and come to the points its refund
    holds: those taken back while ``refunding`` or ``refunded``, none otherwise. Every such
    entry has its order. (An order whose user was deleted lost its entries with them.)"""
    orders = (
        await session.execute(
            select(
                PaymentOrder.order_no,
                PaymentOrder.user_id,
                PaymentOrder.status,
                PaymentOrder.points,
                PaymentOrder.bonus,
                PaymentOrder.refunded_points,
            )
        )
    ).all()
    credited = AuditCheck("每笔已支付订单恰有一笔充值入账 (one topup per paid order)", len(orders))
    taken = AuditCheck(
        "退款收回的积分与订单相符 (refund entries net to the points the refund holds)",
        len(orders),
    )
    refunds: dict[str, list[tuple[int, int]]] = {}
    for (task_no, kind), rows in topups.items():
        if kind != "topup":
            refunds.setdefault(_order_of(task_no), []).extend(rows)
    known = set()
    for order_no, user_id, status, got, bonus, back in orders:
        known.add(order_no)
        if user_id is None:
            continue
        want = [(user_id, got + bonus)] if status in CREDITED and got + bonus > 0 else []
        have = topups.get((order_no, "topup"), [])
        if have != want:
            credited.violations.append(f"订单 {order_no} ({status}): 入账 {have},应为 {want}")
        entries = refunds.get(order_no, [])
        want_net = -back if status in ("refunding", "refunded") else 0
        net = sum(delta for _user, delta in entries)
        if net != want_net or any(user != user_id for user, _delta in entries):
            taken.violations.append(
                f"订单 {order_no} ({status}): 退款流水 {entries},合计应为 {want_net}"
            )
    orphans = sorted({_order_of(no) for (no, _k) in topups} - known)
    credited.violations += [f"充值流水引用了不存在的订单 {no}" for no in orphans]
    return [credited, taken]


def _delivery_problem(
    status: str,
    cost: int,
    pictures: int,
    delivered: int | None,
    refunds: list[int],
    short: list[int],
) -> str | None:
    """What is wrong with an ended task's give-backs, by charged − refunded = delivered ×
    each (None: nothing). A task that has not ended has given nothing back for pictures."""
    if status not in (Status.COMPLETED, Status.FAILED):
        return f"未结束却有少交付退还 {short}" if short else None
    each = cost // max(1, pictures)
    made = delivered if status == Status.COMPLETED else 0
    if made is None:  # a task completed before pictures were counted: one picture
        made = pictures
    back = sum(refunds) + sum(short)
    want_short = (
        [each * (pictures - made)] if status == Status.COMPLETED and made < pictures else []
    )
    if cost - back == made * each and short == want_short:
        return None
    return f"扣费 {cost} − 退还 {back} ≠ 交付 {made} 张 × 单价 {each}(少交付退还 {short})"


async def audit_snapshot(db: Database, grace: timedelta) -> list[AuditCheck]:
    """:func:`audit` against one snapshot of the database; a task is stuck ``grace`` past
    its deadline."""
    async with db.snapshot() as session:
        return await audit(session, utcnow() - grace)
