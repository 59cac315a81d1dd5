"""Payments for the operator: settings, tiers and methods (secrets sealed), the orders
with their kept notifies, a manual check, completion and refund, and the daily report.
Every change is written with its audit entry, in one transaction."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shengtu import failpoints
from shengtu.audit import service as audit
from shengtu.auth.principal import Principal
from shengtu.channels.secrets import mask
from shengtu.context import AppContext
from shengtu.db import Database, utcnow
from shengtu.errors import BadRequest, Conflict, InsufficientPoints, NotFound, ServiceUnavailable
from shengtu.logs import get_logger
from shengtu.models.accounts import User
from shengtu.models.payments import (
    CREDITED,
    PAYABLE,
    PaymentMethod,
    PaymentNotify,
    PaymentOrder,
    PaymentSettings,
    PaymentTier,
)
from shengtu.payments import methods as method_rules
from shengtu.payments import service
from shengtu.payments.base import Payment, PaymentProvider, ProviderError
from shengtu.payments.currency import major
from shengtu.payments.schemas import MethodBody, SettingsBody, TierBody
from shengtu.points import service as points
from shengtu.timefmt import day_in_utc

log = get_logger("shengtu.payments")

# -- settings --------------------------------------------------------------------------


async def settings(db: Database) -> PaymentSettings:
    async with db.read() as session:
        return await service.settings_of(session)


async def save_settings(db: Database, actor: Principal, body: SettingsBody) -> PaymentSettings:
    if body.minAmount > body.maxAmount:
        raise BadRequest("参数错误:最低金额 minAmount 不能高于最高金额 maxAmount")
    async with db.write() as session:
        row = await session.get(PaymentSettings, service.SETTINGS_ID)
        before = _settings_dict(row) if row else None
        if row is None:
            row = service.default_settings()
            session.add(row)
        row.currency = body.currency.upper()
        row.points_per_unit = body.pointsPerUnit
        row.min_amount = body.minAmount
        row.max_amount = body.maxAmount
        row.order_minutes = body.orderMinutes
        row.updated_at = utcnow()
        await session.flush()
        await audit.record(
            session, actor, "payments.settings", "payment_settings", before, _settings_dict(row)
        )
    return row


def _settings_dict(row: PaymentSettings) -> dict[str, Any]:
    return {
        "currency": row.currency,
        "pointsPerUnit": row.points_per_unit,
        "minAmount": row.min_amount,
        "maxAmount": row.max_amount,
        "orderMinutes": row.order_minutes,
    }


# -- tiers -----------------------------------------------------------------------------


async def tiers(db: Database) -> list[PaymentTier]:
    async with db.read() as session:
        return list(
            await session.scalars(select(PaymentTier).order_by(PaymentTier.amount, PaymentTier.id))
        )


def _tier_dict(tier: PaymentTier) -> dict[str, Any]:
    return {
        "amount": tier.amount,
        "points": tier.points,
        "bonus": tier.bonus,
        "label": tier.label,
        "enabled": tier.enabled,
    }


async def add_tier(db: Database, actor: Principal, body: TierBody) -> PaymentTier:
    async with db.write() as session:
        tier = PaymentTier(
            amount=body.amount,
            points=body.points,
            bonus=body.bonus,
            label=body.label,
            enabled=body.enabled,
            created_at=utcnow(),
        )
        session.add(tier)
        await session.flush()
        await audit.record(
            session, actor, "payments.tier.create", f"tier:{tier.id}", None, _tier_dict(tier)
        )
    return tier


async def _tier(session: AsyncSession, tier_id: int) -> PaymentTier:
    tier = await session.get(PaymentTier, tier_id)
    if tier is None:
        raise NotFound("充值档位不存在")
    return tier


async def change_tier(db: Database, actor: Principal, tier_id: int, body: TierBody) -> PaymentTier:
    async with db.write() as session:
        tier = await _tier(session, tier_id)
        before = _tier_dict(tier)
        tier.amount, tier.points, tier.bonus = body.amount, body.points, body.bonus
        tier.label, tier.enabled = body.label, body.enabled
        await session.flush()
        await audit.record(
            session, actor, "payments.tier.update", f"tier:{tier.id}", before, _tier_dict(tier)
        )
    return tier


async def delete_tier(db: Database, actor: Principal, tier_id: int) -> None:
    """Orders made from a tier keep their amount and points: nothing refers to it."""
    async with db.write() as session:
        tier = await _tier(session, tier_id)
        before = _tier_dict(tier)
        await session.delete(tier)
        await audit.record(session, actor, "payments.tier.delete", f"tier:{tier_id}", before, None)


# -- methods ---------------------------------------------------------------------------


async def methods(db: Database) -> list[PaymentMethod]:
    async with db.read() as session:
        return list(
            await session.scalars(
                select(PaymentMethod).order_by(PaymentMethod.sort_order, PaymentMethod.key)
            )
        )


def _kept_secret(value: str, sealed: str | None, ctx: AppContext) -> bool:
    """A secret sent back empty or as its own mask keeps the stored one."""
    if sealed is None:
        return False
    if value == "":
        return True
    try:
        return value == mask(ctx.key_box.open(sealed))
    except ValueError:
        return False


async def save_method(
    ctx: AppContext, actor: Principal, key: str, body: MethodBody
) -> PaymentMethod:
    """Create or change the method ``key``: the kind's fields checked, secrets sealed."""
    cls = method_rules.provider_class(body.kind)
    known = {f.name: f for f in cls.fields}
    unknown = sorted(set(body.config) - set(known))
    if unknown:
        raise BadRequest(f"参数错误:{cls.label} 没有这些设置:{', '.join(unknown)}")
    async with ctx.db.write() as session:
        row = await session.get(PaymentMethod, key)
        before = _method_dict(row) if row else None
        old_sealed: dict[str, Any] = dict(row.sealed or {}) if row and row.kind == body.kind else {}
        config: dict[str, str] = {}
        sealed: dict[str, str] = {}
        for name, field in known.items():
            value = body.config.get(name, "").strip()
            if field.secret:
                if _kept_secret(value, old_sealed.get(name), ctx):
                    sealed[name] = old_sealed[name]
                elif value:
                    sealed[name] = ctx.key_box.seal(value)
                elif field.required:
                    raise BadRequest(f"参数错误:请填写 {field.label}")
                continue
            value = value or field.default
            if not value and field.required:
                raise BadRequest(f"参数错误:请填写 {field.label}")
            if value:
                config[name] = value
        gateway = config.get("gateway", "")
        if gateway and not _secure_gateway(gateway):
            # The merchant key travels in some calls (易支付's api.php) and every answer
            # is believed: in clear, anyone on the path could read the one and forge the
            # other.
            raise BadRequest("参数错误:网关地址须以 https:// 开头(http:// 只可用于本机地址)")
        if row is None:
            row = PaymentMethod(key=key, sort_order=0)
            session.add(row)
        row.kind, row.label, row.enabled = body.kind, body.label, body.enabled
        row.config, row.sealed, row.updated_at = config, sealed, utcnow()
        await session.flush()
        await audit.record(
            session, actor, "payments.method.save", f"method:{key}", before, _method_dict(row)
        )
    return row


def _method_dict(row: PaymentMethod) -> dict[str, Any]:
    """For the audit log: never a secret, only which ones are set."""
    return {
        "kind": row.kind,
        "label": row.label,
        "enabled": row.enabled,
        "config": dict(row.config or {}),
        "secretsSet": sorted((row.sealed or {}).keys()),
    }


# -- orders ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderFilter:
    status: str | None = None
    method: str | None = None
    user_id: int | None = None
    order_no: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def where(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.status:
            where.append(PaymentOrder.status == self.status)
        if self.method:
            where.append(PaymentOrder.method == self.method)
        if self.user_id is not None:
            where.append(PaymentOrder.user_id == self.user_id)
        if self.order_no:
            where.append(PaymentOrder.order_no == self.order_no)
        if self.start is not None:
            where.append(PaymentOrder.created_at >= self.start)
        if self.end is not None:
            where.append(PaymentOrder.created_at < self.end)
        return where


@dataclass(frozen=True)
class FoundOrder:
    order: PaymentOrder
    username: str | None
    notifies: int


async def _with_names(session: AsyncSession, rows: list[PaymentOrder]) -> list[FoundOrder]:
    users = {o.user_id for o in rows if o.user_id is not None}
    names = (
        dict(
            (await session.execute(select(User.id, User.username).where(User.id.in_(users))))
            .tuples()
            .all()
        )
        if users
        else {}
    )
    numbers = [o.order_no for o in rows]
    counts = (
        dict(
            (
                await session.execute(
                    select(PaymentNotify.order_no, func.count())
                    .where(PaymentNotify.order_no.in_(numbers))
                    .group_by(PaymentNotify.order_no)
                )
            )
            .tuples()
            .all()
        )
        if numbers
        else {}
    )
    return [
        FoundOrder(o, names.get(o.user_id) if o.user_id else None, int(counts.get(o.order_no, 0)))
        for o in rows
    ]


async def find_orders(
    db: Database, found: OrderFilter, page: int, size: int
) -> tuple[list[FoundOrder], int]:
    where = found.where()
    async with db.read() as session:
        total = await session.scalar(select(func.count()).select_from(PaymentOrder).where(*where))
        rows = await session.scalars(
            select(PaymentOrder)
            .where(*where)
            .order_by(PaymentOrder.id.desc())
            .offset((page - 1) * size)
            .limit(size)
        )
        return await _with_names(session, list(rows)), int(total or 0)


async def export_orders(db: Database, found: OrderFilter) -> AsyncGenerator[list[FoundOrder], None]:
    """Every matching order, oldest first, 500 at a time, in one read."""
    where = found.where()
    async with db.read() as session:
        last = 0
        while True:
            rows = list(
                await session.scalars(
                    select(PaymentOrder)
                    .where(*where, PaymentOrder.id > last)
                    .order_by(PaymentOrder.id)
                    .limit(500)
                )
            )
            if not rows:
                return
            last = rows[-1].id
            yield await _with_names(session, rows)


async def order_detail(db: Database, order_no: str) -> tuple[FoundOrder, list[PaymentNotify]]:
    async with db.read() as session:
        order = await session.scalar(select(PaymentOrder).where(PaymentOrder.order_no == order_no))
        if order is None:
            raise NotFound("订单不存在")
        notifies = list(
            await session.scalars(
                select(PaymentNotify)
                .where(PaymentNotify.order_no == order_no)
                .order_by(PaymentNotify.id.desc())
                .limit(200)
            )
        )
        (found,) = await _with_names(session, [order])
    return found, notifies


async def find_notifies(
    db: Database,
    *,
    method: str | None,
    order_no: str | None,
    verdict: str | None,
    page: int,
    size: int,
) -> tuple[list[PaymentNotify], int]:
    """The kept notifies, newest first: those that named no order of ours (unknown,
    malformed) are found only here."""
    where: list[ColumnElement[bool]] = []
    if method:
        where.append(PaymentNotify.method == method)
    if order_no:
        where.append(PaymentNotify.order_no == order_no)
    if verdict:
        where.append(PaymentNotify.verdict == verdict)
    async with db.read() as session:
        total = await session.scalar(select(func.count()).select_from(PaymentNotify).where(*where))
        rows = await session.scalars(
            select(PaymentNotify)
            .where(*where)
            .order_by(PaymentNotify.id.desc())
            .offset((page - 1) * size)
            .limit(size)
        )
        return list(rows), int(total or 0)


async def check_now(ctx: AppContext, actor: Principal, order_no: str) -> PaymentOrder:
    """Ask the provider about the order now, whatever the back-off says."""
    await service.order_for(ctx.db, order_no)
    outcome = await service.check(ctx, order_no)
    log.info("payment_checked", order_no=order_no, by=actor.username, verdict=outcome.verdict)
    return await service.order_for(ctx.db, order_no)


async def complete(ctx: AppContext, actor: Principal, order_no: str, reason: str) -> PaymentOrder:
    """The operator says the order is paid (seen in the provider's own console): it is
    credited once, as a notify would, with the reason in the audit log."""
    async with ctx.db.write() as session:
        order = await session.scalar(select(PaymentOrder).where(PaymentOrder.order_no == order_no))
        if order is None:
            raise NotFound("订单不存在")
        if order.status in CREDITED:
            raise Conflict("订单已入账,无需补单")
        before = service.json_safe(order)
        if not await service.mark_paid(
            session, order, order.trade_no, "manual", payable=(*PAYABLE, "closed")
        ):
            raise Conflict("订单状态已变化,请刷新后重试")
        await session.refresh(order)
        await audit.record(
            session,
            actor,
            "payments.order.complete",
            f"order:{order_no}",
            before,
            {**service.json_safe(order), "reason": reason},
        )
    return order


# A refund's call to its provider takes at most ~30 s (two HTTP calls of 15 s).
UNANSWERED = timedelta(minutes=2)
REFUND_BEFORE_PROVIDER = "payments.refund.before_provider"
REFUND_AFTER_PROVIDER = "payments.refund.after_provider"


def refund_no(order_no: str, attempt: int) -> str:
    """The refund's number at the provider: one per attempt, so an attempt asked again is
    the same refund, and a new attempt after a refusal is a new one."""
    return f"R{order_no}" if attempt == 1 else f"R{order_no}-{attempt}"


def refund_entry(order_no: str, attempt: int) -> str:
    """The ledger's ``task_no`` of an attempt's entries (``topup_refund`` and, if the
    provider refused it, ``topup_restore``): the order's own number for the first."""
    return order_no if attempt == 1 else f"{order_no}-{attempt}"


async def refund(
    ctx: AppContext, actor: Principal, order_no: str, amount: int | None, reason: str
) -> PaymentOrder:
    """Give a paid order's money back through its provider, in two steps. First, in one
    transaction: the order becomes ``refunding`` and its points (and bonus, in proportion
    to the amount given back) are taken off, or nothing happens if the user spent them.
    Then the provider is asked, with no transaction held: the order becomes ``refunded``
    when it says done, goes back to ``paid`` with the points given back when it refuses,
    and stays ``refunding`` when no answer came (see :func:`retry_refund` and
    :func:`settle_refund`): the money may have gone, so the points stay taken."""
    async with ctx.db.write() as session:
        order = await session.scalar(select(PaymentOrder).where(PaymentOrder.order_no == order_no))
        if order is None:
            raise NotFound("订单不存在")
        if order.status == "refunding":
            raise Conflict("该订单的退款还没有结果:请重新向支付渠道提交,或确认其结果")
        if order.status != "paid":
            raise Conflict(f"只有已支付的订单可以退款(当前状态 {order.status})")
        give = order.amount if amount is None else amount
        if not 0 < give <= order.amount:
            least, most = major(1, order.currency), major(order.amount, order.currency)
            raise BadRequest(f"参数错误:退款金额须在 {least} 至 {most} {order.currency} 之间")
        back = (order.points + order.bonus) * give // order.amount
        attempt = order.refund_tries + 1
        provider = await _provider_in(ctx, session, order.method)  # 404 now, not later
        before = service.json_safe(order)
        moved = await session.execute(
            update(PaymentOrder)
            .where(
                PaymentOrder.id == order.id,
                PaymentOrder.status == "paid",
                PaymentOrder.refund_tries == order.refund_tries,
            )
            .values(
                status="refunding",
                refunded_amount=give,
                refunded_points=back,
                refund_tries=attempt,
                refund_reason=reason[:255],
                refund_at=utcnow(),
                refund_note="积分已收回,正在向支付渠道退款",
                # Should this process die before the provider's answer is written, the
                # periodic job asks again once the call would long have timed out (where
                # asking again is safe; else the operator settles it).
                checks=0,
                next_check_at=utcnow() + UNANSWERED if provider.refund_repeatable else None,
            )
        )
        if getattr(moved, "rowcount", 0) != 1:
            raise Conflict("订单状态已变化,请刷新后重试")
        if back > 0 and order.user_id is not None:
            try:
                await points.take_back(
                    session,
                    order.user_id,
                    back,
                    "topup_refund",
                    refund_entry(order_no, attempt),
                    f"充值退款 {reason}"[:255],
                )
            except InsufficientPoints:
                balance = await points.balance(session, order.user_id)
                raise Conflict(
                    f"无法退款:需收回 {back} 积分,但该用户余额只剩 {balance.balance} 积分"
                    "(积分已被使用)"
                ) from None
        await session.refresh(order)
        await audit.record(
            session,
            actor,
            "payments.order.refund",
            f"order:{order_no}",
            before,
            {**service.json_safe(order), "reason": reason},
        )
    return await _ask_provider(ctx, actor, order_no)


async def retry_refund(ctx: AppContext, actor: Principal, order_no: str) -> PaymentOrder:
    """Ask the provider again about a refund that had no answer, under the same refund
    number (so it refunds once), where the protocol makes that safe."""
    order = await service.order_for(ctx.db, order_no)
    if order.status != "refunding":
        raise Conflict(f"该订单没有待定的退款(当前状态 {order.status})")
    provider = await service.method_provider(ctx, order.method)
    why_not = not_repeatable(type(provider), order)
    if why_not:
        raise Conflict(why_not + ":请在其后台核实后,确认“已退款”或“未退款”")
    async with ctx.db.write() as session:
        await audit.record(
            session,
            actor,
            "payments.order.refund_retry",
            f"order:{order_no}",
            service.json_safe(order),
            service.json_safe(order),
        )
    return await _ask_provider(ctx, actor, order_no)


def not_repeatable(provider: type[PaymentProvider], order: PaymentOrder) -> str | None:
    """Why the order's refund may not be asked again (it could refund twice), or None."""
    if not provider.refund_repeatable:
        return f"{provider.label}的退款没有退款单号,再次提交可能重复退款"
    hours = provider.refund_repeat_hours
    asked = order.refund_at or order.created_at
    if hours is not None and utcnow() - asked > timedelta(hours=hours):
        return f"{provider.label}只在 {hours:g} 小时内认得同一退款单号,再次提交可能重复退款"
    return None


async def refund_repeatable(db: Database, order: PaymentOrder) -> bool:
    """Whether the console may offer to ask the provider again about the order's refund."""
    async with db.read() as session:
        method = await session.get(PaymentMethod, order.method)
    if method is None or order.status != "refunding":
        return False
    return not_repeatable(method_rules.provider_class(method.kind), order) is None


async def settle_refund(
    ctx: AppContext, actor: Principal, order_no: str, *, done: bool, reason: str
) -> PaymentOrder:
    """The operator's word on a refund that had no answer, having looked at the
    provider's own records: done (``refunded``), or not (back to ``paid``, the points
    given back)."""
    order = await service.order_for(ctx.db, order_no)
    if order.status != "refunding":
        raise Conflict(f"该订单没有待定的退款(当前状态 {order.status})")
    if done:
        await _refund_done(ctx, actor, order, f"运营确认已退款:{reason}")
    else:
        await _refund_undone(ctx, actor, order, f"运营确认未退款:{reason}")
    return await service.order_for(ctx.db, order_no)


async def recheck_refunds(ctx: AppContext) -> int:
    """The periodic job's half for refunds: every ``refunding`` order whose question has
    come (an answer that never came, or "processing", where asking again under the same
    number is safe) is asked again; the back-off is the orders' own."""
    asked = 0
    for order_no in await service.due_orders(ctx.db, utcnow(), status="refunding"):
        try:
            await _ask_provider(ctx, None, order_no)
        except ServiceUnavailable:
            pass  # refused: the order is paid again, its points back, all audited
        except Exception:
            log.exception("payment_refund_recheck_failed", order_no=order_no)
        asked += 1
    return asked


async def _ask_provider(ctx: AppContext, actor: Principal | None, order_no: str) -> PaymentOrder:
    """The provider asked for the order's ``refunding`` attempt, and the order settled on
    its answer. A refusal is raised (503) once everything is given back."""
    order = await service.order_for(ctx.db, order_no)
    provider = await service.method_provider(ctx, order.method)
    number = refund_no(order_no, order.refund_tries)
    failpoints.hit(REFUND_BEFORE_PROVIDER)
    try:
        answer = await provider.refund(
            service.order_ref(order), order.refunded_amount, number, order.refund_reason or ""
        )
        failpoints.hit(REFUND_AFTER_PROVIDER)
    except ProviderError as exc:
        if exc.certain:
            await _refund_undone(ctx, actor, order, f"支付渠道拒绝退款:{exc.reason}")
            raise ServiceUnavailable(
                f"支付渠道退款失败:{exc.reason}(积分已退回用户,订单恢复为已支付)"
            ) from None
        log.warning("payment_refund_unknown", order_no=order_no, reason=exc.reason)
        await _refund_note(ctx, provider, order, f"支付渠道没有给出结果:{exc.reason}")
    else:
        if answer.state == "done":
            await _refund_done(ctx, None, order, None)
        else:
            await _refund_note(ctx, provider, order, "支付渠道正在处理退款")
    return await service.order_for(ctx.db, order_no)


def _still_refunding(order: PaymentOrder) -> ColumnElement[bool]:
    return (
        (PaymentOrder.id == order.id)
        & (PaymentOrder.status == "refunding")
        & (PaymentOrder.refund_tries == order.refund_tries)
    )


async def _refund_note(
    ctx: AppContext, provider: PaymentProvider, order: PaymentOrder, note: str
) -> None:
    """Why the refund is not settled; and when the job asks again, where that is safe
    (else the operator settles it)."""
    values: dict[str, Any] = {"refund_note": note[:255], "next_check_at": None}
    if not_repeatable(type(provider), order) is None:
        wait = service.check_wait(ctx.settings.payment_check_waits, order.checks)
        values.update(next_check_at=utcnow() + wait, checks=PaymentOrder.checks + 1)
    async with ctx.db.write() as session:
        await session.execute(update(PaymentOrder).where(_still_refunding(order)).values(**values))


async def _refund_done(
    ctx: AppContext, actor: Principal | None, order: PaymentOrder, note: str | None
) -> None:
    async with ctx.db.write() as session:
        moved = await session.execute(
            update(PaymentOrder)
            .where(_still_refunding(order))
            .values(status="refunded", refund_note=note[:255] if note else None, next_check_at=None)
        )
        if getattr(moved, "rowcount", 0) != 1:
            raise Conflict("订单状态已变化,请刷新后重试")
        if actor is not None:
            await audit.record(
                session,
                actor,
                "payments.order.refund_settled",
                f"order:{order.order_no}",
                service.json_safe(order),
                {**service.json_safe(order), "status": "refunded", "note": note},
            )


async def _refund_undone(
    ctx: AppContext, actor: Principal | None, order: PaymentOrder, note: str
) -> None:
    """The attempt did not refund: the order is ``paid`` again and its points are given
    back (``topup_restore``, once per attempt)."""
    async with ctx.db.write() as session:
        moved = await session.execute(
            update(PaymentOrder)
            .where(_still_refunding(order))
            .values(
                status="paid",
                refunded_amount=0,
                refunded_points=0,
                refund_note=note[:255],
                next_check_at=None,
            )
        )
        if getattr(moved, "rowcount", 0) != 1:
            raise Conflict("订单状态已变化,请刷新后重试")
        if order.refunded_points > 0 and order.user_id is not None:
            await points.credit(
                session,
                order.user_id,
                order.refunded_points,
                "topup_restore",
                note=note[:255],
                task_no=refund_entry(order.order_no, order.refund_tries),
            )
        await audit.record(
            session,
            actor,
            "payments.order.refund_undone",
            f"order:{order.order_no}",
            service.json_safe(order),
            {**service.json_safe(order), "status": "paid", "note": note},
        )


def _secure_gateway(url: str) -> bool:
    """https, or http to this machine (a provider's double, a local test gateway)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


async def _provider_in(ctx: AppContext, session: AsyncSession, key: str) -> PaymentProvider:
    method = await session.get(PaymentMethod, key)
    if method is None:
        raise NotFound(f"支付方式 {key} 不存在")
    return ctx.payments.provider(method)


# -- the daily report ------------------------------------------------------------------


@dataclass
class MethodDay:
    method: str
    ours: dict[str, int]  # order_no → amount
    theirs: dict[str, int] | None


async def daily_report(ctx: AppContext, day: date) -> list[MethodDay]:
    """Per method, the orders paid on ``day`` (the site's time zone) here, and what the
    provider reports for that day where its API can say."""
    start, end = day_in_utc(day, ctx.settings.timezone)
    async with ctx.db.read() as session:
        rows = (
            await session.execute(
                select(PaymentOrder.method, PaymentOrder.order_no, PaymentOrder.amount).where(
                    PaymentOrder.paid_at >= start,
                    PaymentOrder.paid_at < end,
                    PaymentOrder.status.in_(CREDITED),
                )
            )
        ).all()
        all_methods = list(await session.scalars(select(PaymentMethod)))
    ours: dict[str, dict[str, int]] = defaultdict(dict)
    for key, order_no, amount in rows:
        ours[key][order_no] = amount
    report = []
    for method in sorted(all_methods, key=lambda m: (m.sort_order, m.key)):
        if not method.enabled and method.key not in ours:
            continue
        report.append(
            MethodDay(method.key, ours.pop(method.key, {}), await _theirs(ctx, method, day))
        )
    # Orders of methods since deleted.
    report += [MethodDay(key, orders, None) for key, orders in sorted(ours.items())]
    return report


async def _theirs(ctx: AppContext, method: PaymentMethod, day: date) -> dict[str, int] | None:
    try:
        provider = ctx.payments.provider(method)
        reported: list[Payment] | None = await provider.daily(day, ctx.settings.timezone)
    except (ProviderError, ValueError) as exc:
        log.warning("payment_daily_failed", method=method.key, reason=str(exc))
        return None
    if reported is None:
        return None
    return {p.order_no: p.amount for p in reported if p.state in ("paid", "refunded")}
