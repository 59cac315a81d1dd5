"""``/user/pay/*``: a user's top-ups (their own only; another's order is 404), and
``/pay/notify/{method_key}``, where providers say an order is paid (no login: the
signature is the proof, checked by the method's provider)."""

from __future__ import annotations

import io
from typing import Annotated

import segno
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from shengtu.api.envelope import Envelope, PageNo, PageSize, ok
from shengtu.auth.deps import PrincipalDep
from shengtu.context import ContextDep
from shengtu.errors import BadRequest, NotFound
from shengtu.payments import service
from shengtu.payments.base import Notify
from shengtu.payments.currency import minor_digits
from shengtu.payments.schemas import (
    MethodChoice,
    OrderCreate,
    OrderOut,
    OrderPage,
    PayOptions,
    TierOut,
    order_out,
)

router = APIRouter(tags=["payments"])

OrderNo = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
MethodKeyPath = Annotated[str, Path(min_length=1, max_length=32)]


@router.get("/user/pay/options", response_model=Envelope[PayOptions])
async def pay_options(ctx: ContextDep, _: PrincipalDep) -> Envelope[PayOptions]:
    """The tiers, the custom amount's bounds and the methods a user may top up with."""
    found = await service.options(ctx.db)
    s = found.settings
    return ok(
        PayOptions(
            currency=s.currency,
            minorDigits=minor_digits(s.currency),
            pointsPerUnit=s.points_per_unit,
            minAmount=s.min_amount,
            maxAmount=s.max_amount,
            tiers=[
                TierOut(id=t.id, amount=t.amount, points=t.points, bonus=t.bonus, label=t.label)
                for t in found.tiers
            ],
            methods=[MethodChoice(key=m.key, label=m.label, kind=m.kind) for m in found.methods],
        )
    )


@router.post("/user/pay/orders", response_model=Envelope[OrderOut])
async def create_order(
    body: OrderCreate, request: Request, ctx: ContextDep, principal: PrincipalDep
) -> Envelope[OrderOut]:
    """A top-up order of a tier (``tierId``) or a custom ``amount`` (minor units), and how
    to pay it (``checkout``: a page to go to, or a QR code to scan)."""
    if (body.tierId is None) == (body.amount is None):
        raise BadRequest("参数错误:tierId 与 amount 须且只须填写一个")
    order = await service.create_order(
        ctx,
        principal.user_id,
        method_key=body.method,
        tier_id=body.tierId,
        amount=body.amount,
        client_ip=ctx.clients.of(request.scope),
    )
    labels = await service.method_labels(ctx.db)
    return ok(order_out(order, labels, ctx.settings.timezone))


@router.get("/user/pay/orders", response_model=Envelope[OrderPage])
async def my_orders(
    ctx: ContextDep, principal: PrincipalDep, page: PageNo = 1, size: PageSize = 20
) -> Envelope[OrderPage]:
    rows, total = await service.orders_of(ctx.db, principal.user_id, page, size)
    labels = await service.method_labels(ctx.db)
    tz = ctx.settings.timezone
    return ok(OrderPage(records=[order_out(o, labels, tz) for o in rows], total=total))


@router.get("/user/pay/orders/{order_no}", response_model=Envelope[OrderOut])
async def my_order(
    ctx: ContextDep, principal: PrincipalDep, order_no: OrderNo
) -> Envelope[OrderOut]:
    order = await service.order_for(ctx.db, order_no, principal.user_id)
    labels = await service.method_labels(ctx.db)
    return ok(order_out(order, labels, ctx.settings.timezone))


@router.get(
    "/user/pay/orders/{order_no}/qr.svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}, "description": "付款链接的二维码"}},
)
async def my_order_qr(ctx: ContextDep, principal: PrincipalDep, order_no: OrderNo) -> Response:
    """The order's checkout URL as a QR code (SVG), while it can be paid."""
    order = await service.order_for(ctx.db, order_no, principal.user_id)
    if order.status != "pending" or not order.checkout_url:
        raise NotFound("订单当前没有可扫码的付款链接")
    # A document of its own (with its xmlns): an inline fragment is no image to a browser.
    out = io.BytesIO()
    segno.make(order.checkout_url, error="m").save(
        out, kind="svg", scale=4, border=2, xmldecl=False
    )
    svg = out.getvalue()
    return Response(
        svg,
        media_type="image/svg+xml",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@router.api_route("/pay/notify/{method_key}", methods=["GET", "POST"], include_in_schema=False)
async def notify(request: Request, ctx: ContextDep, method_key: MethodKeyPath) -> Response:
    """A provider's notify, answered as its protocol asks (``success``, 204, ...)."""
    limit = ctx.settings.payment_notify_max_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return Response("notify body too large", status_code=413, media_type="text/plain")
    given = Notify(
        method=request.method,
        query=dict(request.query_params),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=bytes(body),
    )
    answer = await service.handle_notify(ctx, method_key, given)
    return Response(answer.body, status_code=answer.status, media_type=answer.media_type)
