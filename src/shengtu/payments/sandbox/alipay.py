"""The 支付宝 double: the open platform's gateway at ``/alipay/gateway.do`` (so a method's
``gateway`` setting is ``<base>/alipay/gateway.do``), the cashier a payer pays at, notifies,
and the daily bill, signed and checked the way Alipay does, with keys of its own.

At construction it makes Alipay's RSA key pair and the app's (and a stranger's, to forge
with); :meth:`AlipayDouble.merchant_config` hands out what Alipay's console would: the
``app_id``, the app's private key and Alipay's public key (PEM). It signs and verifies with
``cryptography``, not with the SDK the provider uses, so a mistake in one is not mirrored in
the other.

- Every gateway request (GET query or POST form, or both) is checked as Alipay checks it:
  ``method``, a known ``app_id``, ``sign_type`` RSA2, a ``timestamp``, ``charset`` utf-8, and
  the SHA256withRSA signature, by the app's public key, over the sorted non-empty
  parameters but ``sign``. A wrong one is refused as the gateway refuses it, unsigned:
  code 40002, sub_code ``isv.invalid-signature``. Business answers are
  ``{"<method>_response": {...}, "sign": ...}``, signed with Alipay's key over the exact
  text of the response object; ``code`` 10000 or 40004 with an ``ACQ.*`` sub_code.
- ``alipay.trade.page.pay`` (in the payer's browser) shows the cashier; ``alipay.trade.
  precreate`` answers a ``qr_code`` URL whose page is the same cashier (opening it is the
  scan). As at Alipay, a trade exists once the cashier was shown: before, query and close
  answer ACQ.TRADE_NOT_EXIST. The cashier's button pays (before ``time_expire``), notifies,
  and sends a page pay's browser back to ``return_url`` with the signed sync parameters.
- Notifies are POST forms signed with Alipay's key over the sorted non-empty fields but
  ``sign`` and ``sign_type``, sent again on the retry schedule until answered ``success``.
  One trade's payment notify keeps its ``notify_id`` and ``notify_time``, as Alipay's
  retries do.
- ``alipay.trade.query``, ``alipay.trade.refund`` (``out_request_no`` makes a repeat one
  refund, answered ``fund_change`` N), ``alipay.trade.fastpay.refund.query``,
  ``alipay.trade.close`` and ``alipay.data.dataservice.bill.downloadurl.query``: a
  zip of the day's GBK CSV bill, from the next day on (T+1) as Alipay; before that
  ``isp.bill_not_exist``.

Spoiled notifies (:meth:`AlipayDouble.notify_for`): ``signature`` signed with the
stranger's key; ``amount`` another ``total_amount``, signed by Alipay; ``merchant`` another
app's (``app_id``), signed by Alipay; ``stale`` an old notify of the order replayed as it
was (the payment notify, same ``notify_id``; for an unpaid order, the WAIT_BUYER_PAY notify
of its creation): it verifies, and the service sees a repeat; ``malformed`` a body that is
no form. The three forged ones claim TRADE_SUCCESS whatever the order's state.
"""

from __future__ import annotations

import base64
import binascii
import csv
import html
import io
import json
import secrets
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from shengtu.payments.sandbox.common import DoubleOrder, PaymentDouble, PreparedNotify, Spoil

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
NOTIFY_HEADERS = {
    "content-type": "application/x-www-form-urlencoded; charset=utf-8",
    "user-agent": "Mozilla/4.0",
}
MESSAGES = {
    "10000": "Success",
    "40001": "Missing Required Arguments",
    "40002": "Invalid Arguments",
    "40004": "Business Failed",
}
INVALID_SIGNATURE = (
    "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{}"
)
NOT_EXIST = ("ACQ.TRADE_NOT_EXIST", "交易不存在")
STATUS_ERROR = ("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
BILL_COLUMNS = (
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
)


class Refusal(Exception):
    """A gateway answer other than success: (code, sub_code, sub_msg)."""

    def __init__(self, code: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(sub_code)
        self.code = code
        self.sub_code = sub_code
        self.sub_msg = sub_msg


def business(sub: tuple[str, str]) -> Refusal:
    return Refusal("40004", *sub)


@dataclass
class RefundDone:
    order_no: str
    request_no: str
    amount: int
    at: datetime


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rsa2(key: rsa.RSAPrivateKey, text: str) -> str:
    return base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_holds(key: rsa.RSAPublicKey, text: str, sign: str) -> bool:
    try:
        key.verify(
            base64.b64decode(sign, validate=True),
            text.encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def sign_content(params: Mapping[str, str], *, leave_out: Sequence[str]) -> str:
    """Alipay's string to sign: the non-empty parameters but ``leave_out``, sorted by name,
    ``k=v`` joined by ``&``, nothing encoded."""
    return "&".join(
        f"{name}={value}"
        for name, value in sorted(params.items())
        if name not in leave_out and value != ""
    )


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def fen_of(text: str) -> int | None:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    cents = amount * 100
    if not amount.is_finite() or amount <= 0 or cents != cents.to_integral_value():
        return None
    return int(cents)


def beijing(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime(TIME_FORMAT)


def from_beijing(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=BEIJING)
    except ValueError:
        return None


def digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def pem_public(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def base_url(request: Request) -> str:
    """Where the double is served, prefix included, as the caller reached it."""
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>",
        status_code=status,
    )


class AlipayDouble(PaymentDouble):
    kind: ClassVar[str] = "alipay"
    prefix: ClassVar[str] = "/alipay"

    def __init__(
        self,
        *,
        mode: Literal["page", "qr"] = "page",
        retry_seconds: Sequence[float] = (0.5, 1, 2, 4, 8, 15),
    ) -> None:
        super().__init__(retry_seconds=retry_seconds)
        # The mode merchant_config hands out: "qr" when a test cannot open a page pay's URL
        # (the double learns a page pay's order only when the browser brings it).
        self.mode = mode
        self.alipay_key = new_key()
        self.app_key = new_key()
        self.stranger_key = new_key()
        self.app_id = "2021" + digits(12)
        self.other_app_id = "2021" + digits(12)
        self.seller_id = "2088" + digits(12)
        self.buyer_id = "2088" + digits(12)
        self.refunds: list[RefundDone] = []
        self._qr_codes: dict[str, str] = {}  # token → order_no
        self._bills: dict[str, bytes] = {}  # token → zip

    # -- what a merchant is given -------------------------------------------------------

    def merchant_config(self, gateway: str) -> dict[str, str]:
        return {
            "gateway": gateway.rstrip("/") + "/gateway.do",
            "app_id": self.app_id,
            "app_private_key": pem_private(self.app_key),
            "alipay_public_key": pem_public(self.alipay_key),
            "mode": self.mode,
        }

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/gateway.do", self.gateway, methods=["GET", "POST"]),
            Route("/qr/{token}", self.scanned, methods=["GET"]),
            Route("/cashier/{trade_no}", self.cashier, methods=["GET", "POST"]),
            Route("/downloadBillFile.resource", self.bill_file, methods=["GET"]),
        ]

    def accepted(self, status: int, body: bytes) -> bool:
        return body == b"success"

    # -- the gateway -------------------------------------------------------------------

    async def gateway(self, request: Request) -> Response:
        method = request.query_params.get("method", "")
        try:
            params = await self.request_params(request)
            method = params.get("method", "")
            self.check_request(params)
            biz = self.biz_content(params)
            if method == "alipay.trade.page.pay":
                return self.page_pay(request, params, biz)
            handler = {
                "alipay.trade.precreate": self.precreate,
                "alipay.trade.query": self.query,
                "alipay.trade.refund": self.refund,
                "alipay.trade.fastpay.refund.query": self.refund_query,
                "alipay.trade.close": self.close,
                "alipay.data.dataservice.bill.downloadurl.query": self.bill_url,
            }.get(method)
            if handler is None:
                raise Refusal("40002", "isv.invalid-method", "不存在的方法名")
            content = {"code": "10000", "msg": "Success", **handler(request, params, biz)}
        except Refusal as refusal:
            if method == "alipay.trade.page.pay":
                return page("支付宝 - 错误", f"<h1>错误代码 {html.escape(refusal.sub_code)}</h1>")
            return self.refused(method, refusal)
        return self.answer(method, content)

    @staticmethod
    async def request_params(request: Request) -> dict[str, str]:
        pairs = parse_qsl(request.url.query, keep_blank_values=True)
        if request.method == "POST":
            try:
                pairs += parse_qsl((await request.body()).decode(), keep_blank_values=True)
            except UnicodeDecodeError:
                raise Refusal("40002", "isv.invalid-charset", "字符集错误") from None
        return dict(pairs)

    def check_request(self, params: Mapping[str, str]) -> None:
        for name, sub_code, sub_msg in (
            ("method", "isv.missing-method", "缺少方法名参数"),
            ("app_id", "isv.missing-app-id", "缺少AppID参数"),
            ("sign", "isv.missing-signature", "缺少签名参数"),
            ("timestamp", "isv.missing-timestamp", "缺少时间戳参数"),
        ):
            if not params.get(name):
                raise Refusal("40001", sub_code, sub_msg)
        if params["app_id"] != self.app_id:
            raise Refusal("40002", "isv.invalid-app-id", "无效的AppID参数")
        if params.get("sign_type") != "RSA2":
            raise Refusal("40002", "isv.invalid-signature-type", "无效的签名类型")
        if params.get("charset", "utf-8").lower() != "utf-8":
            raise Refusal("40002", "isv.invalid-charset", "字符集错误")
        if from_beijing(params["timestamp"]) is None:
            raise Refusal("40002", "isv.invalid-timestamp", "非法的时间戳参数")
        content = sign_content(params, leave_out=("sign",))
        if not rsa2_holds(self.app_key.public_key(), content, params["sign"]):
            raise Refusal("40002", "isv.invalid-signature", INVALID_SIGNATURE.format(content))

    @staticmethod
    def biz_content(params: Mapping[str, str]) -> dict[str, Any]:
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except json.JSONDecodeError:
            biz = None
        if not isinstance(biz, dict):
            raise Refusal("40002", "isv.invalid-parameter", "参数无效: biz_content")
        return biz

    def answer(self, method: str, content: Mapping[str, Any]) -> Response:
        """A business answer, signed by Alipay over the exact text of the response object."""
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        key = method.replace(".", "_") + "_response"
        body = f'{{"{key}":{text},"sign":"{rsa2(self.alipay_key, text)}"}}'
        return Response(body, media_type="application/json;charset=utf-8")

    def refused(self, method: str, refusal: Refusal) -> Response:
        content = {
            "code": refusal.code,
            "msg": MESSAGES[refusal.code],
            "sub_code": refusal.sub_code,
            "sub_msg": refusal.sub_msg,
        }
        if refusal.code == "40004":
            return self.answer(method, content)
        # The gateway's refusals of the request itself are not signed.
        known = method.startswith("alipay.") and refusal.sub_code != "isv.invalid-method"
        key = method.replace(".", "_") + "_response" if known else "error_response"
        return Response(
            json.dumps({key: content}, ensure_ascii=False),
            media_type="application/json;charset=utf-8",
        )

    # -- paying ------------------------------------------------------------------------

    def open_order(self, params: Mapping[str, str], biz: Mapping[str, Any]) -> DoubleOrder:
        """The order ``biz`` describes, made on first sight; the same number again must
        describe the same order."""
        order_no = str(biz.get("out_trade_no") or "")
        amount = fen_of(str(biz.get("total_amount", "")))
        if not order_no or amount is None or not biz.get("subject"):
            raise business(("ACQ.INVALID_PARAMETER", "参数无效"))
        order = self.orders.get(order_no)
        if order is None:
            order = DoubleOrder(
                order_no=order_no,
                trade_no=datetime.now(BEIJING).strftime("%Y%m%d") + "22001" + digits(15),
                amount=amount,
                currency="CNY",
                notify_url=params.get("notify_url", ""),
                back_url=params.get("return_url", ""),
                extra={
                    "subject": str(biz["subject"]),
                    "time_expire": str(biz.get("time_expire") or ""),
                    "gmt_create": beijing(datetime.now(UTC)),
                },
            )
            self.orders[order_no] = order
        elif order.amount != amount:
            raise business(("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改"))
        if order.state == "paid":
            raise business(("ACQ.TRADE_HAS_SUCCESS", "交易已被支付"))
        if order.state != "pending":
            raise business(("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"))
        return order

    def page_pay(
        self, request: Request, params: Mapping[str, str], biz: Mapping[str, Any]
    ) -> Response:
        order = self.open_order(params, biz)
        return self.cashier_page(request, order)

    def precreate(
        self, request: Request, params: Mapping[str, str], biz: Mapping[str, Any]
    ) -> dict[str, str]:
        order = self.open_order(params, biz)
        token = order.extra.get("qr_token")
        if token is None:
            token = secrets.token_hex(12)
            order.extra["qr_token"] = token
            self._qr_codes[token] = order.order_no
        return {"out_trade_no": order.order_no, "qr_code": f"{base_url(request)}/qr/{token}"}

    async def scanned(self, request: Request) -> Response:
        order_no = self._qr_codes.get(request.path_params["token"])
        if order_no is None:
            return page("支付宝", "<h1>二维码无效</h1>", 404)
        return self.cashier_page(request, self.orders[order_no])

    def cashier_page(self, request: Request, order: DoubleOrder) -> Response:
        # Shown to the payer: from now on Alipay knows the trade (WAIT_BUYER_PAY).
        order.extra["trade_created"] = "1"
        return page(
            "支付宝 - 收银台",
            f"<h1>支付宝收银台</h1>"
            f'<p id="subject">{html.escape(order.extra.get("subject", ""))}</p>'
            f'<p>应付金额 <strong id="amount">{yuan(order.amount)}</strong> 元</p>'
            f'<form method="post" action="{base_url(request)}/cashier/{order.trade_no}">'
            f'<button id="pay" type="submit">确认付款</button></form>',
        )

    async def cashier(self, request: Request) -> Response:
        order = self.by_trade_no(request.path_params["trade_no"])
        if order is None:
            return page("支付宝", "<h1>交易不存在</h1>", 404)
        if request.method == "GET":
            return self.cashier_page(request, order)
        if order.state == "pending" and self.expired(order):
            return page("支付宝", "<h1>交易已关闭: 订单已超时</h1>")
        if order.state not in ("pending", "paid"):
            return page("支付宝", "<h1>交易已关闭</h1>")
        self.pay(order.order_no)
        if not order.back_url:
            return page("支付宝", "<h1>支付成功</h1>")
        return RedirectResponse(self.return_url(order), status_code=303)

    def pay(self, order_no: str, *, notify: bool = True) -> DoubleOrder:
        order = super().pay(order_no, notify=notify)
        order.extra["trade_created"] = "1"
        return order

    def return_url(self, order: DoubleOrder) -> str:
        """Where the browser goes back after a page pay, with Alipay's signed sync return."""
        fields = {
            "charset": "utf-8",
            "out_trade_no": order.order_no,
            "method": "alipay.trade.page.pay.return",
            "total_amount": yuan(order.amount),
            "trade_no": order.trade_no,
            "auth_app_id": self.app_id,
            "version": "1.0",
            "app_id": self.app_id,
            "sign_type": "RSA2",
            "seller_id": self.seller_id,
            "timestamp": beijing(datetime.now(UTC)),
        }
        fields["sign"] = rsa2(
            self.alipay_key, sign_content(fields, leave_out=("sign", "sign_type"))
        )
        joiner = "&" if "?" in order.back_url else "?"
        return order.back_url + joiner + urlencode(fields)

    @staticmethod
    def expired(order: DoubleOrder) -> bool:
        until = from_beijing(order.extra.get("time_expire", ""))
        return until is not None and datetime.now(UTC) > until

    def by_trade_no(self, trade_no: str) -> DoubleOrder | None:
        return next((o for o in self.orders.values() if o.trade_no == trade_no), None)

    def trade(self, biz: Mapping[str, Any]) -> DoubleOrder:
        """The trade ``biz`` names (``out_trade_no`` or ``trade_no``), if Alipay knows it."""
        order = None
        if biz.get("out_trade_no"):
            order = self.orders.get(str(biz["out_trade_no"]))
        elif biz.get("trade_no"):
            order = self.by_trade_no(str(biz["trade_no"]))
        if order is None or not order.extra.get("trade_created"):
            raise business(NOT_EXIST)
        return order

    # -- query, refund, close ----------------------------------------------------------

    def query(
        self, request: Request, params: Mapping[str, str], biz: Mapping[str, Any]
    ) -> dict[str, str]:
        order = self.trade(biz)
        answer = {
            "trade_no": order.trade_no,
            "out_trade_no": order.order_no,
            "buyer_logon_id": "sandbox***@example.com",
            "trade_status": self.trade_status(order),
            "total_amount": yuan(order.amount),
            "buyer_pay_amount": yuan(order.amount) if order.paid_at else "0.00",
            "point_amount": "0.00",
            "invoice_amount": yuan(order.amount) if order.paid_at else "0.00",
            "receipt_amount": yuan(order.amount) if order.paid_at else "0.00",
            "buyer_user_id": self.buyer_id,
        }
        if order.paid_at is not None:
            answer["send_pay_date"] = beijing(order.paid_at)
        return answer

    @staticmethod
    def trade_status(order: DoubleOrder) -> str:
        return {
            "pending": "WAIT_BUYER_PAY",
            "paid": "TRADE_SUCCESS",
            "closed": "TRADE_CLOSED",
            "refunded": "TRADE_CLOSED",
        }[order.state]

    def refund(
        self, request: Request, params: Mapping[str, str], biz: Mapping[str, Any]
    ) -> dict[str, str]:
        order = self.trade(biz)
        amount = fen_of(str(biz.get("refund_amount", "")))
        if amount is None:
            raise business(("ACQ.INVALID_PARAMETER", "参数无效: refund_amount"))
        if order.paid_at is None:
            raise business(STATUS_ERROR)
        request_no = str(biz.get("out_request_no") or order.order_no)
        done = self.refund_of(order, request_no)
        if done is not None and done.amount != amount:
            raise business(("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与该退款请求号的不一致"))
        fresh = done is None
        if done is None:
            if amount > order.amount - order.refunded:
                raise business(("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限"))
            done = RefundDone(order.order_no, request_no, amount, datetime.now(UTC))
            self.refunds.append(done)
            order.refunded += amount
            if order.refunded == order.amount:
                order.state = "refunded"
        return {
            "trade_no": order.trade_no,
            "out_trade_no": order.order_no,
            "buyer_logon_id": "sandbox***@example.com",
            # Y: this call moved money; N: a repeat of a refund already done.
            "fund_change": "Y" if fresh else "N",
            "refund_fee": yuan(order.refunded),
            "gmt_refund_pay": beijing(done.at),
            "buyer_user_id": self.buyer_id,
        }

    def refund_query(
        self, request: Request, params: Mapping[str, str], biz: Mapping[str, Any]
    ) -> dict[str, str]:
        """A refund by its ``out_request_no``; an unknown one answers success with no
        refund in it, as Alipay does."""
        order = self.trade(biz)
        request_no = str(biz.get("out_request_no") or order.order_no)
        done = self.refund_of(order, request_no)
        if done is None:
            return {"out_trade_no": order.order_no, "trade_no": order.trade_no}
        return {
            "trade_no": order.trade_no,
            "out_trade_no": order.order_no,
            "out_request_no": request_no,
            "total_amount": yuan(order.amount),
            "refund_amount": yuan(done.amount),
            "refund_status": "REFUND_SUCCESS",
            "gmt_refund_pay": beijing(done.at),
        }

    def refund_of(self, order: DoubleOrder, request_no: str) -> RefundDone | None:
        return next(
            (r for r in self.refunds if (r.order_no, r.request_no) == (order.order_no, request_no)),
            None,
        )

    def close(
        self, request: Request, params: Mapping[str, str], biz: Mapping[str, Any]
    ) -> dict[str, str]:
        order = self.trade(biz)
        if order.state != "pending":
            raise business(STATUS_ERROR)
        order.state = "closed"
        return {"trade_no": order.trade_no, "out_trade_no": order.order_no}

    # -- the daily bill ----------------------------------------------------------------

    def bill_url(
        self, request: Request, params: Mapping[str, str], biz: Mapping[str, Any]
    ) -> dict[str, str]:
        if biz.get("bill_type") != "trade":
            raise business(("isp.bill_type_invalid", "账单类型不支持"))
        try:
            day = date.fromisoformat(str(biz.get("bill_date", "")))
        except ValueError:
            raise business(("isv.invalid-parameter", "账单时间格式错误")) from None
        if day >= datetime.now(BEIJING).date():
            raise business(("isp.bill_not_exist", "账单不存在"))
        token = secrets.token_hex(16)
        self._bills[token] = self.bill(day)
        query = urlencode(
            {
                "bizType": "trade",
                "userId": self.seller_id,
                "fileType": "csv.zip",
                "bizDates": day.strftime("%Y%m%d"),
                "downloadFileName": f"{self.seller_id}_{day:%Y%m%d}.csv.zip",
                "token": token,
            }
        )
        return {"bill_download_url": f"{base_url(request)}/downloadBillFile.resource?{query}"}

    async def bill_file(self, request: Request) -> Response:
        archive = self._bills.get(request.query_params.get("token", ""))
        if archive is None:
            return Response("文件不存在或已过期", status_code=404)
        return Response(archive, media_type="application/zip")

    def bill(self, day: date) -> bytes:
        """The day's trade bill as Alipay zips it: the detail CSV and its summary, GBK."""
        rows: list[list[str]] = []
        for order in self.orders.values():
            if order.paid_at is not None and order.paid_at.astimezone(BEIJING).date() == day:
                rows.append(self.bill_row(order, "交易", order.amount, order.paid_at, ""))
        for done in self.refunds:
            if done.at.astimezone(BEIJING).date() == day:
                order = self.orders[done.order_no]
                rows.append(self.bill_row(order, "退款", -done.amount, done.at, done.request_no))
        out = io.StringIO()
        stamp = f"{day:%Y年%m月%d日}"
        out.write(f"#支付宝业务明细查询\n#账号：[{self.seller_id}0156]\n")
        out.write(f"#起始日期：[{stamp} 00:00:00]   终止日期：[{stamp} 23:59:59]\n")
        out.write(
            "#-----------------------------------------业务明细列表----------------------------------------\n"
        )
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(BILL_COLUMNS)
        writer.writerows(rows)
        trades = [r for r in rows if r[2] == "交易"]
        out.write(
            "#-----------------------------------------业务明细列表结束------------------------------------\n"
        )
        total = sum(int(Decimal(r[11]) * 100) for r in trades)
        out.write(f"#交易合计：{len(trades)}笔，商家实收共{yuan(total)}元，商家优惠共0.00元\n")
        out.write(f"#导出时间：[{datetime.now(BEIJING):%Y年%m月%d日 %H:%M:%S}]\n")
        name = f"{self.seller_id}0156_{day:%Y%m%d}"
        summary = f"#支付宝业务汇总查询\n门店编号,门店名称,交易订单总笔数\n,,{len(trades)}\n"
        packed = io.BytesIO()
        with zipfile.ZipFile(packed, "w") as bundle:
            bundle.writestr(f"{name}_业务明细.csv", out.getvalue().encode("gbk"))
            bundle.writestr(f"{name}_业务明细(汇总).csv", summary.encode("gbk"))
        return packed.getvalue()

    def bill_row(
        self, order: DoubleOrder, kind: str, amount: int, at: datetime, request_no: str
    ) -> list[str]:
        money = yuan(abs(amount))
        money = money if amount >= 0 else "-" + money
        row = [""] * len(BILL_COLUMNS)
        row[0] = order.trade_no + "\t"
        row[1] = order.order_no + "\t"
        row[2] = kind
        row[3] = order.extra.get("subject", "")
        row[4] = order.extra.get("gmt_create", "")
        row[5] = beijing(at)
        row[10] = "sandbox***@example.com"
        row[11] = money
        row[12] = money
        for i in range(13, 18):
            row[i] = "0.00"
        row[19] = row[20] = "0.00"
        row[21] = request_no
        row[22] = "0.00"
        return row

    # -- notifies ----------------------------------------------------------------------

    def notify_for(self, order_no: str, *, spoil: Spoil | None = None) -> PreparedNotify:
        order = self.orders[order_no]
        if spoil == "malformed":
            body = f"trade_status:TRADE_SUCCESS;out_trade_no:{order_no}".encode()
            return PreparedNotify("POST", order.notify_url, NOTIFY_HEADERS, body)
        if spoil == "stale":
            if order.paid_at is None:
                return self.prepared(order, self.created_fields(order), self.alipay_key)
            return self.prepared(order, self.paid_fields(order), self.alipay_key)
        if spoil is None:
            return self.prepared(order, self.state_fields(order), self.alipay_key)
        fields = self.paid_fields(order)
        fields["notify_id"] = secrets.token_hex(16)
        key = self.alipay_key
        if spoil == "signature":
            key = self.stranger_key
        elif spoil == "amount":
            other = yuan(order.amount - 1 if order.amount > 1 else order.amount + 1)
            for name in ("total_amount", "receipt_amount", "invoice_amount", "buyer_pay_amount"):
                fields[name] = other
        elif spoil == "merchant":
            fields["app_id"] = fields["auth_app_id"] = self.other_app_id
        return self.prepared(order, fields, key)

    def prepared(
        self, order: DoubleOrder, fields: dict[str, str], key: rsa.RSAPrivateKey
    ) -> PreparedNotify:
        fields["sign"] = rsa2(key, sign_content(fields, leave_out=("sign", "sign_type")))
        body = urlencode(fields).encode()
        return PreparedNotify("POST", order.notify_url, NOTIFY_HEADERS, body)

    def state_fields(self, order: DoubleOrder) -> dict[str, str]:
        """The notify of the order's state now: paid (its one payment notify, as Alipay
        sends it again), refunded in full (TRADE_CLOSED with the refund), closed, or
        waiting."""
        if order.state == "paid":
            return self.paid_fields(order)
        if order.state == "refunded":
            last = next(r for r in reversed(self.refunds) if r.order_no == order.order_no)
            fields = self.paid_fields(order)
            fields.update(
                notify_id=secrets.token_hex(16),
                notify_time=beijing(datetime.now(UTC)),
                trade_status="TRADE_CLOSED",
                refund_fee=yuan(order.refunded),
                gmt_refund=beijing(last.at),
                out_biz_no=last.request_no,
            )
            return fields
        fields = self.created_fields(order)
        if order.state == "closed":
            fields.update(
                notify_id=secrets.token_hex(16),
                notify_time=beijing(datetime.now(UTC)),
                trade_status="TRADE_CLOSED",
                gmt_close=beijing(datetime.now(UTC)),
            )
        return fields

    def paid_fields(self, order: DoubleOrder) -> dict[str, str]:
        """The payment notify: the same notify_id and notify_time every time it is sent."""
        paid_at = order.paid_at or datetime.now(UTC)
        extra = order.extra
        extra.setdefault("paid_notify_id", secrets.token_hex(16))
        extra.setdefault("paid_notify_time", beijing(paid_at))
        money = yuan(order.amount)
        fields = self.created_fields(order)
        fields.update(
            notify_id=extra["paid_notify_id"],
            notify_time=extra["paid_notify_time"],
            trade_status="TRADE_SUCCESS",
            gmt_payment=beijing(paid_at),
            receipt_amount=money,
            invoice_amount=money,
            buyer_pay_amount=money,
            point_amount="0.00",
            fund_bill_list=json.dumps(
                [{"amount": money, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
            ),
        )
        return fields

    def created_fields(self, order: DoubleOrder) -> dict[str, str]:
        """The WAIT_BUYER_PAY notify of the trade's creation, which the others build on."""
        extra = order.extra
        extra.setdefault("created_notify_id", secrets.token_hex(16))
        return {
            "notify_type": "trade_status_sync",
            "notify_id": extra["created_notify_id"],
            "notify_time": extra.get("gmt_create", ""),
            "charset": "utf-8",
            "version": "1.0",
            "sign_type": "RSA2",
            "app_id": self.app_id,
            "auth_app_id": self.app_id,
            "trade_no": order.trade_no,
            "out_trade_no": order.order_no,
            "buyer_id": self.buyer_id,
            "buyer_logon_id": "sandbox***@example.com",
            "seller_id": self.seller_id,
            "trade_status": "WAIT_BUYER_PAY",
            "total_amount": yuan(order.amount),
            "subject": order.extra.get("subject", ""),
            "gmt_create": extra.get("gmt_create", ""),
        }
