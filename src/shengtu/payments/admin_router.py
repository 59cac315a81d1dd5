"""``/admin/payments/*``: the operator's payment settings, tiers, methods (secrets shown
only masked), orders (with filters, CSV, their kept notifies), a manual check, completion
and refund, and the daily report per method."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from shengtu.api.envelope import Envelope, PageNo, PageSize, ok
from shengtu.api.spreadsheet import csv_file
from shengtu.auth.deps import AdminDep
from shengtu.context import ContextDep
from shengtu.db import utcnow
from shengtu.models.payments import PaymentMethod, PaymentOrder, PaymentSettings, PaymentTier
from shengtu.payments import admin_service as service
from shengtu.payments import methods as method_rules
from shengtu.payments.currency import minor_digits
from shengtu.payments.providers import PROVIDERS
from shengtu.payments.schemas import (
    AdminOrderDetail,
    AdminOrderPage,
    AdminTierOut,
    CompleteBody,
    DailyReport,
    Difference,
    FieldOut,
    KindOut,
    MethodBody,
    MethodOut,
    MethodReport,
    Money,
    NotifyPage,
    OrderOut,
    OrderStatus,
    RefundBody,
    RefundSettleBody,
    SettingsBody,
    SettingsOut,
    TierBody,
    admin_order_detail,
    admin_order_out,
    notify_record,
    order_out,
)
from shengtu.payments.service import Verdict, method_labels
from shengtu.timefmt import fmt, local, to_utc

router = APIRouter(tags=["admin: payments"])

OrderNo = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
MethodKey = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
TierId = Annotated[int, Path(ge=1, le=2**62)]


def _settings_out(row: PaymentSettings, tz: str) -> SettingsOut:
    return SettingsOut(
        currency=row.currency,
        pointsPerUnit=row.points_per_unit,
        minAmount=row.min_amount,
        maxAmount=row.max_amount,
        orderMinutes=row.order_minutes,
        minorDigits=minor_digits(row.currency),
        timezone=tz,
    )


@router.get("/admin/payments/settings", response_model=Envelope[SettingsOut])
async def get_settings(ctx: ContextDep, _: AdminDep) -> Envelope[SettingsOut]:
    return ok(_settings_out(await service.settings(ctx.db), ctx.settings.timezone))


@router.put("/admin/payments/settings", response_model=Envelope[SettingsOut])
async def put_settings(
    body: SettingsBody, ctx: ContextDep, admin: AdminDep
) -> Envelope[SettingsOut]:
    return ok(
        _settings_out(await service.save_settings(ctx.db, admin, body), ctx.settings.timezone)
    )


def _tier_out(t: PaymentTier) -> AdminTierOut:
    return AdminTierOut(
        id=t.id,
        amount=t.amount,
        points=t.points,
        bonus=t.bonus,
        label=t.label,
        enabled=t.enabled,
    )


@router.get("/admin/payments/tiers", response_model=Envelope[list[AdminTierOut]])
async def list_tiers(ctx: ContextDep, _: AdminDep) -> Envelope[list[AdminTierOut]]:
    return ok([_tier_out(t) for t in await service.tiers(ctx.db)])


@router.post("/admin/payments/tiers", response_model=Envelope[AdminTierOut])
async def add_tier(body: TierBody, ctx: ContextDep, admin: AdminDep) -> Envelope[AdminTierOut]:
    return ok(_tier_out(await service.add_tier(ctx.db, admin, body)))


@router.put("/admin/payments/tiers/{tier_id}", response_model=Envelope[AdminTierOut])
async def change_tier(
    body: TierBody, ctx: ContextDep, admin: AdminDep, tier_id: TierId
) -> Envelope[AdminTierOut]:
    return ok(_tier_out(await service.change_tier(ctx.db, admin, tier_id, body)))


@router.delete("/admin/payments/tiers/{tier_id}", response_model=Envelope[None])
async def delete_tier(ctx: ContextDep, admin: AdminDep, tier_id: TierId) -> Envelope[None]:
    await service.delete_tier(ctx.db, admin, tier_id)
    return ok(None)


def _fields(kind: str) -> list[FieldOut]:
    return [FieldOut(**method_rules.field_out(f)) for f in PROVIDERS[kind].fields]


@router.get("/admin/payments/kinds", response_model=Envelope[list[KindOut]])
async def list_kinds(_: AdminDep) -> Envelope[list[KindOut]]:
    """The provider kinds a method can be, with the settings each needs."""
    return ok([KindOut(kind=k, label=cls.label, fields=_fields(k)) for k, cls in PROVIDERS.items()])


def _method_out(row: PaymentMethod, ctx: ContextDep) -> MethodOut:
    kind = row.kind
    return MethodOut(
        key=row.key,
        kind=kind,
        label=row.label,
        enabled=row.enabled,
        config=method_rules.shown_config(row, ctx.key_box),
        fields=_fields(kind) if kind in PROVIDERS else [],
    )


@router.get("/admin/payments/methods", response_model=Envelope[list[MethodOut]])
async def list_methods(ctx: ContextDep, _: AdminDep) -> Envelope[list[MethodOut]]:
    return ok([_method_out(m, ctx) for m in await service.methods(ctx.db)])


@router.put("/admin/payments/methods/{method_key}", response_model=Envelope[MethodOut])
async def save_method(
    body: MethodBody, ctx: ContextDep, admin: AdminDep, method_key: MethodKey
) -> Envelope[MethodOut]:
    """Create or change a method. A secret left empty, or sent back as its mask, keeps
    the stored one."""
    return ok(_method_out(await service.save_method(ctx, admin, method_key, body), ctx))


StatusQuery = Annotated[OrderStatus | None, Query()]
TextQuery = Annotated[str | None, Query(max_length=64)]
UserQuery = Annotated[int | None, Query(ge=1, le=2**62)]
TimeQuery = Annotated[datetime | None, Query(description="本地时间(站点时区),按下单时间筛选")]


def _filter(
    tz: str,
    status: str | None,
    method: str | None,
    user_id: int | None,
    order_no: str | None,
    start: datetime | None,
    end: datetime | None,
) -> service.OrderFilter:
    return service.OrderFilter(
        status=status,
        method=method,
        user_id=user_id,
        order_no=order_no,
        start=to_utc(start, tz) if start else None,
        end=to_utc(end, tz) if end else None,
    )


@router.get("/admin/payments/orders", response_model=Envelope[AdminOrderPage])
async def list_orders(
    ctx: ContextDep,
    _: AdminDep,
    status: StatusQuery = None,
    method: TextQuery = None,
    userId: UserQuery = None,
    orderNo: TextQuery = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: TimeQuery = None,
    page: PageNo = 1,
    size: PageSize = 20,
) -> Envelope[AdminOrderPage]:
    tz = ctx.settings.timezone
    found = _filter(tz, status, method, userId, orderNo, from_, to)
    rows, total = await service.find_orders(ctx.db, found, page, size)
    labels = await method_labels(ctx.db)
    return ok(
        AdminOrderPage(
            records=[admin_order_out(f.order, labels, tz, f.username, f.notifies) for f in rows],
            total=total,
        )
    )


CSV_COLUMNS = (
    "orderNo",
    "status",
    "amount",
    "currency",
    "points",
    "bonus",
    "method",
    "userId",
    "username",
    "tradeNo",
    "paidVia",
    "createdAt",
    "paidAt",
    "refundedAmount",
    "refundedPoints",
)


@router.get(
    "/admin/payments/orders.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "充值订单 CSV(UTF-8,带 BOM)"}},
)
async def export_orders(
    ctx: ContextDep,
    _: AdminDep,
    status: StatusQuery = None,
    method: TextQuery = None,
    userId: UserQuery = None,
    orderNo: TextQuery = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: TimeQuery = None,
) -> StreamingResponse:
    tz = ctx.settings.timezone
    found = _filter(tz, status, method, userId, orderNo, from_, to)

    async def chunks() -> AsyncIterator[list[tuple[object, ...]]]:
        async with aclosing(service.export_orders(ctx.db, found)) as orders:
            async for chunk in orders:
                # In CSV_COLUMNS' order.
                yield [
                    (
                        f.order.order_no,
                        f.order.status,
                        f.order.amount,
                        f.order.currency,
                        f.order.points,
                        f.order.bonus,
                        f.order.method,
                        f.order.user_id,
                        f.username,
                        f.order.trade_no,
                        f.order.paid_via,
                        fmt(f.order.created_at, tz),
                        fmt(f.order.paid_at, tz),
                        f.order.refunded_amount,
                        f.order.refunded_points,
                    )
                    for f in chunk
                ]

    return StreamingResponse(
        csv_file(CSV_COLUMNS, chunks()),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="payment-orders.csv"'},
    )


@router.get("/admin/payments/orders/{order_no}", response_model=Envelope[AdminOrderDetail])
async def order_detail(
    ctx: ContextDep, _: AdminDep, order_no: OrderNo
) -> Envelope[AdminOrderDetail]:
    """The order with the notifies kept for it (secrets masked), newest first."""
    found, notifies = await service.order_detail(ctx.db, order_no)
    labels = await method_labels(ctx.db)
    tz = ctx.settings.timezone
    repeatable = await service.refund_repeatable(ctx.db, found.order)
    return ok(admin_order_detail(found.order, labels, tz, found.username, notifies, repeatable))


@router.get("/admin/payments/notifies", response_model=Envelope[NotifyPage])
async def list_notifies(
    ctx: ContextDep,
    _: AdminDep,
    method: TextQuery = None,
    orderNo: TextQuery = None,
    verdict: Annotated[Verdict | None, Query()] = None,
    page: PageNo = 1,
    size: PageSize = 20,
) -> Envelope[NotifyPage]:
    """Every kept notify, newest first (secrets masked), with what became of it: those
    that named no order of ours are only here."""
    rows, total = await service.find_notifies(
        ctx.db, method=method, order_no=orderNo, verdict=verdict, page=page, size=size
    )
    tz = ctx.settings.timezone
    return ok(NotifyPage(records=[notify_record(n, tz) for n in rows], total=total))


async def _order_out(ctx: ContextDep, order: PaymentOrder) -> OrderOut:
    labels = await method_labels(ctx.db)
    return order_out(order, labels, ctx.settings.timezone)


@router.post("/admin/payments/orders/{order_no}/check", response_model=Envelope[OrderOut])
async def check_order(ctx: ContextDep, admin: AdminDep, order_no: OrderNo) -> Envelope[OrderOut]:
    """Ask the provider about the order now (and credit it if it is paid)."""
    return ok(await _order_out(ctx, await service.check_now(ctx, admin, order_no)))


@router.post("/admin/payments/orders/{order_no}/complete", response_model=Envelope[OrderOut])
async def complete_order(
    body: CompleteBody, ctx: ContextDep, admin: AdminDep, order_no: OrderNo
) -> Envelope[OrderOut]:
    """Mark the order paid by hand (credited once); the reason goes to the audit log."""
    return ok(await _order_out(ctx, await service.complete(ctx, admin, order_no, body.reason)))


@router.post("/admin/payments/orders/{order_no}/refund", response_model=Envelope[OrderOut])
async def refund_order(
    body: RefundBody, ctx: ContextDep, admin: AdminDep, order_no: OrderNo
) -> Envelope[OrderOut]:
    """Refund through the provider, taking the order's points back first (409 if spent):
    ``refunded`` when the provider says done, 503 (everything given back) when it
    refuses, ``refunding`` with a ``refundNote`` when no answer came."""
    order = await service.refund(ctx, admin, order_no, body.amount, body.reason)
    return ok(await _order_out(ctx, order))


@router.post("/admin/payments/orders/{order_no}/refund/retry", response_model=Envelope[OrderOut])
async def retry_refund(ctx: ContextDep, admin: AdminDep, order_no: OrderNo) -> Envelope[OrderOut]:
    """Ask the provider again about a ``refunding`` order, under the same refund number
    (409 where the protocol has none, or no longer knows it)."""
    return ok(await _order_out(ctx, await service.retry_refund(ctx, admin, order_no)))


@router.post("/admin/payments/orders/{order_no}/refund/settle", response_model=Envelope[OrderOut])
async def settle_refund(
    body: RefundSettleBody, ctx: ContextDep, admin: AdminDep, order_no: OrderNo
) -> Envelope[OrderOut]:
    """The operator's word on a ``refunding`` order, from the provider's own records:
    refunded, or not (back to paid, the points given back)."""
    order = await service.settle_refund(ctx, admin, order_no, done=body.done, reason=body.reason)
    return ok(await _order_out(ctx, order))


@router.get("/admin/payments/report", response_model=Envelope[DailyReport])
async def daily_report(
    ctx: ContextDep,
    _: AdminDep,
    day: Annotated[date | None, Query(description="YYYY-MM-DD(站点时区);默认昨天")] = None,
) -> Envelope[DailyReport]:
    """Per method: the orders paid that day here, and what the provider reports for it
    where its API can say; the orders the two disagree on."""
    tz = ctx.settings.timezone
    if day is None:
        day = local(utcnow(), tz).date() - timedelta(days=1)
    rows = await service.daily_report(ctx, day)
    methods = []
    for row in rows:
        differences = []
        provider = None
        if row.theirs is not None:
            provider = Money(ordersPaid=len(row.theirs), amount=sum(row.theirs.values()))
            for order_no in sorted(set(row.ours) | set(row.theirs)):
                ours, theirs = row.ours.get(order_no), row.theirs.get(order_no)
                if ours != theirs:
                    differences.append(Difference(orderNo=order_no, ours=ours, theirs=theirs))
        methods.append(
            MethodReport(
                method=row.method,
                ordersPaid=len(row.ours),
                amount=sum(row.ours.values()),
                provider=provider,
                differences=differences,
            )
        )
    return ok(DailyReport(day=day.isoformat(), methods=methods))
