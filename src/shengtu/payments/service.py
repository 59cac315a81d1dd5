"""Top-ups: orders made, payments believed, points credited exactly once.

A payment (from a verified notify, a query, or an operator's manual completion) credits
only when its merchant, order number, amount and currency equal the order's. The credit
is one conditional UPDATE of the order (``pending``/``expired`` → ``paid``; a late payment
of an expired order is money received all the same) in the transaction of its one
``topup`` ledger entry, whose task_no is the order's number: the ledger's unique
(task_no, kind) refuses a second one whatever races. Every notify is kept (redacted),
whatever its verdict, and answered the way its protocol expects.

Nothing here holds a database transaction across a provider's call, but for a refund,
whose points are taken back in the transaction that records it (see :func:`refund`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu import failpoints
from shengtu.context import AppContext
from shengtu.db import Database, utcnow
from shengtu.errors import BadRequest, NotFound, ServiceUnavailable
from shengtu.logs import get_logger
from shengtu.models.payments import (
    CREDITED,
    PAYABLE,
    PaymentMethod,
    PaymentNotify,
    PaymentOrder,
    PaymentSettings,
    PaymentTier,
)
from shengtu.payments import redact
from shengtu.payments.base import (
    Answer,
    Notify,
    NotifyIgnored,
    NotifyRefused,
    OrderRef,
    Payment,
    PaymentProvider,
    ProviderError,
    Urls,
)
from shengtu.payments.currency import major, per_unit
from shengtu.points import service as points
from shengtu.timefmt import local

log = get_logger("shengtu.payments")

Verdict = Literal[
    "credited", "duplicate", "refused", "mismatch", "unknown_order", "pending", "ignored"
]
# Answered "received" to the provider: it should stop sending.
BELIEVED = frozenset({"credited", "duplicate", "pending", "ignored"})
# Kept only SHENGTU_PAYMENT_NOTIFY_RETENTION_DAYS: the notifies that moved nothing.
MOVED_NOTHING = ("refused", "mismatch", "unknown_order", "ignored")
BEFORE_COMMIT = "payments.notify.before_commit"
AFTER_COMMIT = "payments.notify.after_commit"
SETTINGS_ID = 1


def new_order_no(now: datetime, tz: str) -> str:
    """``P`` + the site's local time (as a task number has it) + 8 random hex digits: 23
    characters of letters and digits, which every provider takes as its merchant order
    number (WeChat Pay: at most 32)."""
    return f"P{local(now, tz):%Y%m%d%H%M%S}{secrets.token_hex(4).upper()}"


def subject(points_total: int) -> str:
    return f"生图积分充值 {points_total} 积分"


def order_ref(order: PaymentOrder) -> OrderRef:
    return OrderRef(
        order_no=order.order_no,
        amount=order.amount,
        currency=order.currency,
        subject=subject(order.points + order.bonus),
        created_at=order.created_at,
        expires_at=order.expires_at,
        provider_ref=order.provider_ref,
        client_ip=order.client_ip,
    )


# -- settings, tiers, methods ----------------------------------------------------------


def default_settings() -> PaymentSettings:
    return PaymentSettings(
        id=SETTINGS_ID,
        currency="CNY",
        points_per_unit=100,
        min_amount=100,
        max_amount=100_000,
        order_minutes=30,
        updated_at=utcnow(),
    )


async def settings_of(session: AsyncSession) -> PaymentSettings:
    """The saved settings, or the defaults (not saved) until an operator saves some."""
    return await session.get(PaymentSettings, SETTINGS_ID) or default_settings()


@dataclass(frozen=True)
class Options:
    settings: PaymentSettings
    tiers: list[PaymentTier]
    methods: list[PaymentMethod]


async def options(db: Database) -> Options:
    """What a user may choose from: the enabled tiers and methods."""
    async with db.read() as session:
        tiers = await session.scalars(
            select(PaymentTier)
            .where(PaymentTier.enabled.is_(True))
            .order_by(PaymentTier.amount, PaymentTier.id)
        )
        methods = await session.scalars(
            select(PaymentMethod)
            .where(PaymentMethod.enabled.is_(True))
            .order_by(PaymentMethod.sort_order, PaymentMethod.key)
        )
        return Options(await settings_of(session), list(tiers), list(methods))


def custom_points(amount: int, settings: PaymentSettings) -> int:
    """The points a custom ``amount`` (in the currency's minor units) buys."""
    return amount * settings.points_per_unit // per_unit(settings.currency)


# -- orders ----------------------------------------------------------------------------


def check_wait(settings_waits: tuple[float, ...], checks: int) -> timedelta:
    waits = settings_waits or (10.0,)
    return timedelta(seconds=waits[min(checks, len(waits) - 1)])


def notify_url(ctx: AppContext, method_key: str) -> str:
    return f"{ctx.settings.resolved_public_base_url}/pay/notify/{method_key}"


def back_url(ctx: AppContext, order_no: str) -> str:
    """Where the payer's browser comes back to: the console's top-up page, which polls
    the order (the return itself proves nothing: only a notify or a query credits)."""
    return f"{ctx.settings.resolved_public_base_url}/console/?payOrder={order_no}"


async def _priced(
    session: AsyncSession, tier_id: int | None, amount: int | None, settings: PaymentSettings
) -> tuple[int, int, int]:
    """(amount, points, bonus) of a tier or a custom amount; 400 otherwise."""
    if tier_id is not None:
        tier = await session.get(PaymentTier, tier_id)
        if tier is None or not tier.enabled:
            raise BadRequest("参数错误:充值档位不存在或已停用")
        return tier.amount, tier.points, tier.bonus
    if amount is None:
        raise BadRequest("参数错误:请选择充值档位 tierId 或填写金额 amount")
    if not settings.min_amount <= amount <= settings.max_amount:
        raise BadRequest(
            f"参数错误:充值金额须在 {major(settings.min_amount, settings.currency)} 至 "
            f"{major(settings.max_amount, settings.currency)} {settings.currency} 之间"
        )
    got = custom_points(amount, settings)
    if got <= 0:
        raise BadRequest("参数错误:该金额换不到积分")
    return amount, got, 0


async def _usable_method(session: AsyncSession, key: str) -> PaymentMethod:
    method = await session.get(PaymentMethod, key)
    if method is None or not method.enabled:
        raise BadRequest("参数错误:支付方式不存在或未启用")
    return method


async def create_order(
    ctx: AppContext,
    user_id: int,
    *,
    method_key: str,
    tier_id: int | None,
    amount: int | None,
    client_ip: str | None,
) -> PaymentOrder:
    """A pending order, committed before the provider hears of it (so a notify that comes
    at once finds it), then started at the provider. A provider that refuses closes it."""
    now = utcnow()
    async with ctx.db.write() as session:
        settings = await settings_of(session)
        method = await _usable_method(session, method_key)
        paid, got, bonus = await _priced(session, tier_id, amount, settings)
        provider = ctx.payments.provider(method)
        if provider.currencies is not None and settings.currency not in provider.currencies:
            raise BadRequest(f"参数错误:{method.label} 不收 {settings.currency}")
        order = PaymentOrder(
            order_no=new_order_no(now, ctx.settings.timezone),
            user_id=user_id,
            amount=paid,
            currency=settings.currency,
            points=got,
            bonus=bonus,
            method=method.key,
            kind=method.kind,
            status="pending",
            client_ip=client_ip,
            created_at=now,
            expires_at=now + timedelta(minutes=settings.order_minutes),
            next_check_at=now + check_wait(ctx.settings.payment_check_waits, 0),
            checks=0,
            refunded_amount=0,
            refunded_points=0,
        )
        session.add(order)
        await session.flush()
    urls = Urls(notify=notify_url(ctx, method.key), back=back_url(ctx, order.order_no))
    try:
        checkout = await provider.create(order_ref(order), urls)
    except ProviderError as exc:
        await _close(ctx.db, order.order_no)
        log.warning("payment_create_failed", order_no=order.order_no, reason=exc.reason)
        raise ServiceUnavailable(f"支付渠道下单失败:{exc.reason}") from None
    async with ctx.db.write() as session:
        await session.execute(
            update(PaymentOrder)
            .where(PaymentOrder.order_no == order.order_no)
            .values(
                checkout_kind=checkout.kind,
                checkout_url=checkout.url,
                provider_ref=checkout.provider_ref,
            )
        )
    order.checkout_kind, order.checkout_url = checkout.kind, checkout.url
    order.provider_ref = checkout.provider_ref
    return order


async def _close(db: Database, order_no: str) -> None:
    async with db.write() as session:
        await session.execute(
            update(PaymentOrder)
            .where(PaymentOrder.order_no == order_no, PaymentOrder.status == "pending")
            .values(status="closed", closed_at=utcnow(), next_check_at=None)
        )


async def order_for(db: Database, order_no: str, user_id: int | None = None) -> PaymentOrder:
    """The order ``order_no`` (of ``user_id`` when given: another user's is 404 too)."""
    async with db.read() as session:
        order = await session.scalar(select(PaymentOrder).where(PaymentOrder.order_no == order_no))
    if order is None or (user_id is not None and order.user_id != user_id):
        raise NotFound("订单不存在")
    return order


async def orders_of(
    db: Database, user_id: int, page: int, size: int
) -> tuple[list[PaymentOrder], int]:
    async with db.read() as session:
        mine = PaymentOrder.user_id == user_id
        total = await session.scalar(select(func.count()).select_from(PaymentOrder).where(mine))
        rows = await session.scalars(
            select(PaymentOrder)
            .where(mine)
            .order_by(PaymentOrder.id.desc())
            .offset((page - 1) * size)
            .limit(size)
        )
        return list(rows), int(total or 0)


async def method_labels(db: Database) -> dict[str, str]:
    async with db.read() as session:
        return dict(
            (await session.execute(select(PaymentMethod.key, PaymentMethod.label))).tuples().all()
        )


# -- crediting -------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    reason: str | None = None

    @property
    def believed(self) -> bool:
        return self.verdict in BELIEVED


def mismatch(order: PaymentOrder, payment: Payment, merchant: str) -> str | None:
    """What of ``payment`` differs from ``order`` (None: nothing)."""
    wrong = []
    if payment.merchant != merchant:
        wrong.append(f"商户 {payment.merchant} ≠ {merchant}")
    if payment.order_no != order.order_no:
        wrong.append(f"订单号 {payment.order_no} ≠ {order.order_no}")
    if payment.amount != order.amount:
        wrong.append(f"金额 {payment.amount} ≠ {order.amount}")
    if payment.currency.upper() != order.currency:
        wrong.append(f"币种 {payment.currency} ≠ {order.currency}")
    return "、".join(wrong) or None


async def mark_paid(
    session: AsyncSession,
    order: PaymentOrder,
    trade_no: str | None,
    via: str,
    payable: tuple[str, ...] = PAYABLE,
) -> bool:
    """Move ``order`` to paid and credit its points, in ``session``'s transaction; False
    if it was not payable any more (another notify, query or operator got there first)."""
    now = utcnow()
    moved = await session.execute(
        update(PaymentOrder)
        .where(PaymentOrder.id == order.id, PaymentOrder.status.in_(payable))
        .values(status="paid", paid_at=now, trade_no=trade_no, paid_via=via, next_check_at=None)
    )
    if getattr(moved, "rowcount", 0) != 1:
        return False
    total = order.points + order.bonus
    if order.user_id is not None and total > 0:
        await points.credit(
            session,
            order.user_id,
            total,
            "topup",
            note=f"在线充值 {major(order.amount, order.currency)} {order.currency}",
            task_no=order.order_no,
        )
    return True


async def _apply(
    session: AsyncSession, payment: Payment, merchant: str, method: str, via: str
) -> tuple[Outcome, PaymentOrder | None]:
    order = await session.scalar(
        select(PaymentOrder).where(PaymentOrder.order_no == payment.order_no)
    )
    if order is None:
        return Outcome("unknown_order", f"没有订单 {payment.order_no}"), None
    if order.method != method:
        # Another method's key (another merchant, or an aggregator that holds it) speaks
        # only for its own orders.
        return Outcome("mismatch", f"订单属于支付方式 {order.method},不是 {method}"), order
    wrong = mismatch(order, payment, merchant)
    if wrong:
        return Outcome("mismatch", wrong), order
    if payment.state != "paid":
        return Outcome("pending", f"支付方报告的状态为 {payment.state}"), order
    if order.status in CREDITED:
        other = order.trade_no and payment.trade_no and order.trade_no != payment.trade_no
        note = f"订单已入账,但交易号不同:{payment.trade_no}" if other else "订单已入账"
        return Outcome("duplicate", note), order
    if order.status not in PAYABLE:
        return Outcome("mismatch", f"订单状态为 {order.status},不能入账"), order
    if await mark_paid(session, order, payment.trade_no, via):
        return Outcome("credited"), order
    return Outcome("duplicate", "订单已由并发的通知或查询入账"), order


async def apply_payment(
    db: Database,
    payment: Payment,
    merchant: str,
    method: str,
    via: str,
    *,
    failpoint: bool = False,
) -> Outcome:
    """Believe ``payment`` (which ``method``'s provider, of ``merchant``, reported) if it
    matches its order, and credit the order once. A second credit the database refuses
    (unique ledger entry) is a duplicate, not an error; any other refusal is an error,
    so the provider is not told "received" for an order left unpaid."""
    try:
        async with db.write() as session:
            outcome, _ = await _apply(session, payment, merchant, method, via)
            if failpoint:
                failpoints.hit(BEFORE_COMMIT)
    except IntegrityError:
        async with db.read() as session:
            status = await session.scalar(
                select(PaymentOrder.status).where(PaymentOrder.order_no == payment.order_no)
            )
        if status not in CREDITED:
            raise
        return Outcome("duplicate", "订单已入账(账本拒绝了第二笔入账)")
    if failpoint:
        failpoints.hit(AFTER_COMMIT)
    return outcome


async def keep_notify(
    db: Database,
    method_key: str,
    notify: Notify,
    order_no: str | None,
    outcome: Outcome,
    names: frozenset[str],
) -> None:
    """The notify, redacted, with its verdict: a transaction of its own, so a refused one
    is kept as well as a credited one."""
    headers, body = redact.kept(notify, names)
    async with db.write() as session:
        session.add(
            PaymentNotify(
                method=method_key[:32],
                order_no=redact.printable(order_no)[:40] if order_no else None,
                received_at=utcnow(),
                http_method=notify.method[:8],
                headers=headers,
                body=body,
                verdict=outcome.verdict,
                reason=redact.printable(outcome.reason)[:255] if outcome.reason else None,
            )
        )


NOTIFY_PRUNE_BATCH = 1000


async def prune_notifies(ctx: AppContext, now: datetime | None = None) -> int:
    """Deletes the kept notifies that moved nothing (MOVED_NOTHING) received before
    SHENGTU_PAYMENT_NOTIFY_RETENTION_DAYS; how many went."""
    cutoff = (now or utcnow()) - timedelta(days=ctx.settings.payment_notify_retention_days)

    due = (
        select(PaymentNotify.id)
        .where(PaymentNotify.received_at < cutoff, PaymentNotify.verdict.in_(MOVED_NOTHING))
        .order_by(PaymentNotify.received_at)
    )
    delete_ids = ctx.db.deleting(PaymentNotify.id)
    gone = await ctx.db.delete_in_batches(due, delete_ids, batch=NOTIFY_PRUNE_BATCH)
    if gone:
        log.info("payment_notifies_pruned", count=gone)
    return gone


UNKNOWN_METHOD = Answer(404, b"unknown payment method", "text/plain")


async def handle_notify(ctx: AppContext, method_key: str, notify: Notify) -> Answer:
    """A provider's notify: verified, matched with its order, credited once, kept, and
    answered as the provider's protocol asks."""
    async with ctx.db.read() as session:
        method = await session.get(PaymentMethod, method_key)
    if method is None:
        await keep_notify(
            ctx.db, method_key, notify, None, Outcome("refused", "支付方式不存在"), frozenset()
        )
        return UNKNOWN_METHOD
    # A disabled method still takes the notifies of the orders made while it was on.
    provider = ctx.payments.provider(method)
    try:
        payment = await provider.verify(notify)
    except NotifyRefused as exc:
        outcome, order_no = Outcome("refused", exc.reason), exc.order_no
    except NotifyIgnored as exc:
        outcome, order_no = Outcome("ignored", exc.reason), None
    else:
        order_no = payment.order_no
        outcome = await apply_payment(
            ctx.db, payment, provider.merchant, method.key, "notify", failpoint=True
        )
    try:
        await keep_notify(ctx.db, method.key, notify, order_no, outcome, provider.redact)
    except Exception:
        # The verdict stands (a credit is committed by now): the provider still gets its
        # answer, and the operator the log line below.
        log.exception("payment_notify_not_kept", method=method.key, order_no=order_no)
    log.info(
        "payment_notify",
        method=method.key,
        order_no=order_no,
        verdict=outcome.verdict,
        reason=outcome.reason,
    )
    return provider.answer(outcome.believed)


# -- asking the provider ---------------------------------------------------------------


async def method_provider(ctx: AppContext, key: str) -> PaymentProvider:
    async with ctx.db.read() as session:
        method = await session.get(PaymentMethod, key)
    if method is None:
        raise NotFound(f"支付方式 {key} 不存在")
    return ctx.payments.provider(method)


async def check(ctx: AppContext, order_no: str) -> Outcome:
    """Ask the order's provider about it now, and credit it if the provider says it is
    paid; a pending order past its expiry (asked one last time) becomes expired and is
    closed at the provider. Else the next question is set by the back-off."""
    order = await order_for(ctx.db, order_no)
    provider = await method_provider(ctx, order.method)
    try:
        payment = await provider.query(order_ref(order))
    except ProviderError as exc:
        if order.status == "pending" and utcnow() >= order.expires_at:
            # Past its time and the provider cannot say: expired all the same (a late
            # notify still credits it, and the daily report would show the difference).
            await _expire(ctx, order, provider)
        else:
            await _reschedule(ctx, order)
        return Outcome("pending", exc.reason)
    if payment is not None and payment.state == "paid":
        outcome = await apply_payment(ctx.db, payment, provider.merchant, order.method, "query")
        if outcome.verdict in ("credited", "duplicate"):
            return outcome
        # An answer about another order, or one that does not match this one, settles
        # nothing: the order is asked about again, and expires at its time.
        log.warning(
            "payment_query_not_believed",
            order_no=order_no,
            verdict=outcome.verdict,
            reason=outcome.reason,
        )
    if order.status == "pending" and utcnow() >= order.expires_at:
        await _expire(ctx, order, provider)
        return Outcome("pending", "订单已过期")
    await _reschedule(ctx, order)
    if payment is None:
        return Outcome("pending", "支付方没有这笔订单")
    return Outcome("pending", f"支付方报告的状态为 {payment.state}")


async def _reschedule(ctx: AppContext, order: PaymentOrder) -> None:
    now = utcnow()
    wait = check_wait(ctx.settings.payment_check_waits, order.checks + 1)
    # Never past the expiry: the last question comes at the expiry itself.
    at = min(now + wait, max(order.expires_at, now))
    async with ctx.db.write() as session:
        await session.execute(
            update(PaymentOrder)
            .where(PaymentOrder.id == order.id, PaymentOrder.status == "pending")
            .values(next_check_at=at, checks=PaymentOrder.checks + 1)
        )


async def _expire(ctx: AppContext, order: PaymentOrder, provider: PaymentProvider) -> None:
    async with ctx.db.write() as session:
        moved = await session.execute(
            update(PaymentOrder)
            .where(PaymentOrder.id == order.id, PaymentOrder.status == "pending")
            .values(status="expired", closed_at=utcnow(), next_check_at=None)
        )
    if getattr(moved, "rowcount", 0) == 1:
        try:
            await provider.close(order_ref(order))
        except ProviderError as exc:
            log.warning("payment_close_failed", order_no=order.order_no, reason=exc.reason)


# How long a worker holds an order it is asking about before another may ask.
CLAIM = timedelta(seconds=60)
BATCH = 50


async def due_orders(db: Database, now: datetime, status: str = "pending") -> list[str]:
    """The orders of ``status`` (pending: is it paid?; refunding: is the refund done?)
    whose question has come, each claimed for :data:`CLAIM` (a conditional UPDATE: of
    racing workers one asks)."""
    async with db.read() as session:
        rows = (
            await session.execute(
                select(PaymentOrder.id, PaymentOrder.order_no, PaymentOrder.next_check_at)
                .where(PaymentOrder.status == status, PaymentOrder.next_check_at <= now)
                .order_by(PaymentOrder.next_check_at)
                .limit(BATCH)
            )
        ).all()
    claimed = []
    for order_id, order_no, at in rows:
        async with db.write() as session:
            moved = await session.execute(
                update(PaymentOrder)
                .where(PaymentOrder.id == order_id, PaymentOrder.next_check_at == at)
                .values(next_check_at=now + CLAIM)
            )
        if getattr(moved, "rowcount", 0) == 1:
            claimed.append(order_no)
    return claimed


async def check_due(ctx: AppContext) -> int:
    """The query job: every pending order whose time has come is asked about once."""
    asked = 0
    for order_no in await due_orders(ctx.db, utcnow()):
        try:
            await check(ctx, order_no)
        except Exception:
            log.exception("payment_check_failed", order_no=order_no)
        asked += 1
    return asked


def json_safe(order: PaymentOrder) -> dict[str, Any]:
    """The order's columns an audit entry keeps."""
    return {
        "status": order.status,
        "amount": order.amount,
        "currency": order.currency,
        "points": order.points,
        "bonus": order.bonus,
        "tradeNo": order.trade_no,
        "refundedAmount": order.refunded_amount,
        "refundedPoints": order.refunded_points,
    }
