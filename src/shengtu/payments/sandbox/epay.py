"""The 易支付 (EPay) gateway's double: ``submit.php`` (a cashier page a browser can pay
on), ``mapi.php``, ``api.php`` (``act=order``, ``orders``, ``refund``), and the notifies,
signed with the merchant's key and sent by GET until answered ``success``. It checks
every merchant signature and key as a gateway does, and refuses a wrong one the same way
(``签名校验失败``, ``KEY校验失败``)."""

from __future__ import annotations

import html
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import ClassVar
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from shengtu.payments.currency import fen, yuan
from shengtu.payments.providers.epay import GATEWAY_ZONE, sign, signed
from shengtu.payments.sandbox.common import (
    DoubleOrder,
    PaymentDouble,
    PreparedNotify,
    Spoil,
)

SIGNED_ORDER = ("pid", "type", "out_trade_no", "notify_url", "name", "money")
OTHER_MERCHANT = "1999"


def wall_clock(moment: datetime) -> str:
    """A time as the gateway writes it: Beijing's wall clock, no zone."""
    return moment.astimezone(GATEWAY_ZONE).strftime("%Y-%m-%d %H:%M:%S")


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>",
        status_code=status,
    )


class EpayDouble(PaymentDouble):
    kind: ClassVar[str] = "epay"
    prefix: ClassVar[str] = "/epay"

    def __init__(
        self,
        pid: str = "1000",
        key: str = "",
        *,
        retry_seconds: Sequence[float] = (0.5, 1, 2, 4, 8, 15),
    ) -> None:
        super().__init__(retry_seconds=retry_seconds)
        self.pid = pid
        self.key = key or secrets.token_hex(16)
        self.by_trade: dict[str, str] = {}  # trade_no → order_no
        # Misbehaving on request: act=order answers about this order instead (a gateway
        # that mixes its orders up), paid.
        self.answers_about: str | None = None

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/submit.php", self._submit, methods=["GET", "POST"]),
            Route("/mapi.php", self._mapi, methods=["POST"]),
            Route("/api.php", self._api, methods=["GET", "POST"]),
            Route("/cashier/{trade_no}", self._cashier, methods=["GET"]),
            Route("/pay/{trade_no}", self._pay, methods=["POST"]),
        ]

    def merchant_config(self, gateway: str) -> dict[str, str]:
        return {
            "gateway": gateway,
            "pid": self.pid,
            "key": self.key,
            "mode": "submit",
            "type": "alipay",
        }

    def accepted(self, status: int, body: bytes) -> bool:
        return status == 200 and body.strip() == b"success"

    # -- the merchant's requests ---------------------------------------------------------

    async def _fields(self, request: Request) -> dict[str, str]:
        fields = dict(request.query_params)
        if request.method == "POST":
            form = await request.form()
            fields.update({k: str(v) for k, v in form.items()})
        return fields

    def _order_of(self, fields: Mapping[str, str]) -> DoubleOrder | str:
        """The order a signed request makes (or the one it made before), or the gateway's
        refusal."""
        if fields.get("pid") != self.pid:
            return "商户不存在"
        missing = [name for name in SIGNED_ORDER if not fields.get(name)]
        if missing:
            return f"缺少参数 {','.join(missing)}"
        if not secrets.compare_digest(sign(fields, self.key), fields.get("sign", "")):
            return "签名校验失败！"
        try:
            amount = fen(fields["money"])
        except ValueError:
            return "金额不合法"
        if amount <= 0:
            return "金额不合法"
        order_no = fields["out_trade_no"]
        known = self.orders.get(order_no)
        if known is not None:
            if known.amount != amount:
                return "该订单号已存在"
            return known
        trade_no = datetime.now(GATEWAY_ZONE).strftime("%Y%m%d%H%M%S") + secrets.token_hex(4)
        order = DoubleOrder(
            order_no=order_no,
            trade_no=trade_no,
            amount=amount,
            currency="CNY",
            notify_url=fields["notify_url"],
            back_url=fields.get("return_url", ""),
            extra={
                "type": fields["type"],
                "name": fields["name"],
                "addtime": datetime.now(GATEWAY_ZONE).strftime("%Y-%m-%d %H:%M:%S"),
            },
        )
        self.orders[order_no] = order
        self.by_trade[trade_no] = order_no
        return order

    def _cashier_url(self, request: Request, order: DoubleOrder) -> str:
        return str(request.base_url).rstrip("/") + f"{self.prefix}/cashier/{order.trade_no}"

    async def _submit(self, request: Request) -> Response:
        order = self._order_of(await self._fields(request))
        if isinstance(order, str):
            return _page("错误", f"<h3>{html.escape(order)}</h3>")
        return RedirectResponse(self._cashier_url(request, order), status_code=302)

    async def _mapi(self, request: Request) -> Response:
        order = self._order_of(await self._fields(request))
        if isinstance(order, str):
            return JSONResponse({"code": -1, "msg": order})
        answer: dict[str, object] = {"code": 1, "msg": "", "trade_no": order.trade_no}
        # A QR code to scan for WeChat Pay, a page to go to otherwise, as the gateways do.
        url = self._cashier_url(request, order)
        answer["qrcode" if order.extra.get("type") == "wxpay" else "payurl"] = url
        return JSONResponse(answer)

    async def _api(self, request: Request) -> Response:
        fields = await self._fields(request)
        if fields.get("pid") != self.pid or not secrets.compare_digest(
            fields.get("key", ""), self.key
        ):
            return JSONResponse({"code": -3, "msg": "KEY校验失败"})
        act = fields.get("act")
        if act == "order":
            return self._query(fields)
        if act == "orders":
            return self._list(fields)
        if act == "refund" and request.method == "POST":
            return self._refund(fields)
        return JSONResponse({"code": -5, "msg": "No Act!"})

    def _row(self, order: DoubleOrder) -> dict[str, object]:
        return {
            "trade_no": order.trade_no,
            "out_trade_no": order.order_no,
            "api_trade_no": "",
            "type": order.extra.get("type", ""),
            "pid": self.pid,
            "addtime": order.extra.get("addtime", ""),
            "endtime": wall_clock(order.paid_at) if order.paid_at else "",
            "name": order.extra.get("name", ""),
            "money": yuan(order.amount),
            "status": 1 if order.state in ("paid", "refunded") else 0,
        }

    def _query(self, fields: Mapping[str, str]) -> Response:
        order_no = fields.get("out_trade_no") or self.by_trade.get(fields.get("trade_no", ""), "")
        order = self.orders.get(order_no)
        if order is None:
            return JSONResponse({"code": -1, "msg": "订单号不存在"})
        row = self._row(order)
        if self.answers_about is not None:
            row.update(out_trade_no=self.answers_about, status=1)
        return JSONResponse({"code": 1, "msg": "查询订单号成功！", **row})

    def _list(self, fields: Mapping[str, str]) -> Response:
        try:
            limit = min(50, int(fields.get("limit") or 20))
            offset = int(fields.get("offset") or 0)
        except ValueError:
            return JSONResponse({"code": -1, "msg": "参数错误"})
        newest = sorted(self.orders.values(), key=lambda o: o.trade_no, reverse=True)
        rows = [self._row(o) for o in newest[offset : offset + limit]]
        return JSONResponse({"code": 1, "msg": f"查询结果记录条数:{len(rows)}", "data": rows})

    def _refund(self, fields: Mapping[str, str]) -> Response:
        order_no = fields.get("out_trade_no") or self.by_trade.get(fields.get("trade_no", ""), "")
        order = self.orders.get(order_no)
        if order is None:
            return JSONResponse({"code": -1, "msg": "订单号不存在"})
        if order.state not in ("paid", "refunded"):
            return JSONResponse({"code": -1, "msg": "只有已支付的订单才可以退款"})
        try:
            amount = fen(fields.get("money", ""))
        except ValueError:
            return JSONResponse({"code": -1, "msg": "退款金额不合法"})
        if amount <= 0 or order.refunded + amount > order.amount:
            return JSONResponse({"code": -1, "msg": "退款金额超过订单金额"})
        order.refunded += amount
        if order.refunded == order.amount:
            order.state = "refunded"
        return JSONResponse({"code": 1, "msg": "退款成功！"})

    # -- the payer -----------------------------------------------------------------------

    async def _cashier(self, request: Request) -> Response:
        order_no = self.by_trade.get(request.path_params["trade_no"])
        order = self.orders.get(order_no or "")
        if order is None:
            return _page("错误", "<h3>订单不存在</h3>", 404)
        name = html.escape(order.extra.get("name", ""))
        if order.state != "pending":
            return _page("收银台", f"<h3 id='state'>订单已支付</h3><p>{name}</p>")
        action = f"{self.prefix}/pay/{order.trade_no}"
        return _page(
            "易支付收银台(沙箱)",
            "<h2>易支付收银台(沙箱)</h2>"
            f"<p>商品:<span id='name'>{name}</span></p>"
            f"<p>金额:¥<span id='money'>{yuan(order.amount)}</span></p>"
            f"<p>订单号:<span id='order'>{html.escape(order.order_no)}</span></p>"
            f"<form method='post' action='{html.escape(action)}'>"
            "<button id='pay' type='submit'>确认支付</button></form>",
        )

    async def _pay(self, request: Request) -> Response:
        order_no = self.by_trade.get(request.path_params["trade_no"])
        if order_no is None or order_no not in self.orders:
            return _page("错误", "<h3>订单不存在</h3>", 404)
        order = self.pay(order_no)
        if order.back_url:
            # The payer's browser goes back to the merchant with the notify's fields.
            fields = self._notify_fields(order)
            back = order.back_url + ("&" if "?" in order.back_url else "?") + urlencode(fields)
            return RedirectResponse(back, status_code=303)
        return _page("支付成功", "<h3 id='state'>支付成功</h3>")

    # -- the notifies --------------------------------------------------------------------

    def _notify_fields(
        self, order: DoubleOrder, *, pid: str | None = None, amount: int | None = None
    ) -> dict[str, str]:
        return signed(
            {
                "pid": pid or self.pid,
                "trade_no": order.trade_no,
                "out_trade_no": order.order_no,
                "type": order.extra.get("type", "alipay"),
                "name": order.extra.get("name", ""),
                "money": yuan(order.amount if amount is None else amount),
                "trade_status": "TRADE_SUCCESS",
            },
            self.key,
        )

    def notify_for(self, order_no: str, *, spoil: Spoil | None = None) -> PreparedNotify:
        order = self.orders[order_no]
        if spoil == "malformed":
            # No fields at all, as a scanner or a broken proxy sends.
            return PreparedNotify(
                "POST", order.notify_url, {"content-type": "text/plain"}, b"\x00{["
            )
        if spoil == "amount":
            fields = self._notify_fields(order, amount=order.amount + 100)
        elif spoil == "merchant":
            # Another merchant's notify (the gateway's other pid), signed as it would be.
            fields = self._notify_fields(order, pid=OTHER_MERCHANT)
        else:
            # "stale": EPay's notifies carry no time, so an old one replayed is the same
            # bytes again; only the order's state tells it from the first.
            fields = self._notify_fields(order)
        if spoil == "signature":
            fields["sign"] = sign(fields, "not-the-" + self.key)
        query = urlencode(fields)
        url = order.notify_url + ("&" if "?" in order.notify_url else "?") + query
        return PreparedNotify("GET", url, {"user-agent": "Mozilla/5.0 (epay double)"})
