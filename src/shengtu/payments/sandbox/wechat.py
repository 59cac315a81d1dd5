"""The 微信支付 (WeChat Pay API v3) double, mounted under ``/wechatpay``: Native pay's create,
the query and close by our order number, refunds, the trade bill and its download, and a
cashier page where the payer pays (the real ``code_url`` opens WeChat; this one opens a page
with a pay button, for a browser).

It holds what the merchant platform hands out, made at construction: the merchant's API key
pair and its certificate serial, the APIv3 key, and WeChat Pay's own key pair with its
public key id (``PUB_KEY_ID_...``); :meth:`merchant_config` gives them as an operator would
type them in. Every API request's ``Authorization`` is checked for real (scheme, this
mchid, this serial, a timestamp within five minutes, the RSA-SHA256 signature over the
request) and refused as WeChat Pay does: 401 ``{"code": "SIGN_ERROR", ...}``, unsigned.
Every other answer, errors included, is signed with WeChat Pay's key (``tamper_answers``
signs them with a stray key instead, for the tests that the provider refuses them), except
the bill file, which WeChat Pay does not sign either.

Notifies are ``TRANSACTION.SUCCESS`` with the transaction encrypted under the APIv3 key and
the headers signed, sent again on the protocol's schedule (shortened) until answered 200 or
204. Not checked, unlike the real one: that ``notify_url`` is https (the tests serve on
loopback). The bill of a day is given at once, today's too (the real one after 10:00 the
next day).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import string
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from shengtu.payments.sandbox.common import DoubleOrder, PaymentDouble, PreparedNotify, Spoil

SCHEME = "WECHATPAY2-SHA256-RSA2048"
CLOCK_SKEW = 300  # seconds a request's timestamp may be off
BEIJING = ZoneInfo("Asia/Shanghai")
STALE = timedelta(minutes=10)  # how old a "stale" notify is
TRADE_STATES = {"pending": "NOTPAY", "paid": "SUCCESS", "closed": "CLOSED", "refunded": "REFUND"}
TRADE_STATE_DESC = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "CLOSED": "订单已关闭",
    "REFUND": "订单发生过退款",
}
BILL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
    "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
    "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
BILL_TOTALS_HEADER = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
FEE_RATE = Decimal("0.006")  # 0.60%, the usual rate
_AUTH_FIELD = re.compile(r'(\w+)="([^"]*)"')

Endpoint = Callable[[Request, bytes], Awaitable[Response]]


def _digits(n: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(n))


def _alnum(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _sign(key: rsa.RSAPrivateKey, message: str) -> str:
    signature = key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def _yuan(fen: int | Decimal) -> str:
    return f"{Decimal(fen) / 100:.2f}"


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"code": code, "message": message}


class WechatPayDouble(PaymentDouble):
    kind = "wechat"
    prefix = "/wechatpay"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mchid = "19" + _digits(8)
        self.appid = "wx" + secrets.token_hex(8)
        self.merchant_key = _rsa_key()
        self.merchant_serial = secrets.token_hex(20).upper()
        self.apiv3_key = _alnum(32)
        self.platform_key = _rsa_key()
        self.public_key_id = "PUB_KEY_ID_" + _digits(22)
        self.other_mchid = "19" + _digits(8)
        # Answers signed with a stray key: the provider must refuse them.
        self.tamper_answers = False
        # What a new refund answers: SUCCESS at once, or PROCESSING as most real ones do.
        self.refund_status = "SUCCESS"
        self.refunds: dict[str, dict[str, Any]] = {}  # out_refund_no -> the refund
        self.cashier: dict[str, str] = {}  # the token in a code_url -> our order number
        self.bills: dict[str, bytes] = {}  # download token -> the bill file
        # Every request whose Authorization was refused: (path, the reason).
        self.refused: list[tuple[str, str]] = []

    @cached_property
    def stray_key(self) -> rsa.RSAPrivateKey:
        """A key that is not WeChat Pay's, for forged signatures."""
        return _rsa_key()

    def merchant_config(self, gateway: str) -> dict[str, str]:
        return {
            "gateway": gateway,
            "mchid": self.mchid,
            "appid": self.appid,
            "cert_serial_no": self.merchant_serial,
            "private_key": self.merchant_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "apiv3_key": self.apiv3_key,
            "wechatpay_public_key": self.platform_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode(),
            "wechatpay_public_key_id": self.public_key_id,
        }

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v3/pay/transactions/native", self._api(self.create), methods=["POST"]),
            Route("/v3/pay/transactions/out-trade-no/{no}", self._api(self.query), methods=["GET"]),
            Route(
                "/v3/pay/transactions/out-trade-no/{no}/close",
                self._api(self.close),
                methods=["POST"],
            ),
            Route("/v3/refund/domestic/refunds", self._api(self.refund), methods=["POST"]),
            Route("/v3/bill/tradebill", self._api(self.trade_bill), methods=["GET"]),
            Route(
                "/v3/billdownload/file",
                self._api(self.bill_file),
                methods=["GET"],
                name="bill_file",
            ),
            Route("/pay/{token}", self.cashier_page, methods=["GET", "POST"], name="cashier"),
        ]

    def accepted(self, status: int, body: bytes) -> bool:
        return status in (200, 204)

    # -- signing, both ways

    def _api(self, handler: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind WeChat Pay's check of the merchant's signature."""

        async def guarded(request: Request) -> Response:
            body = await request.body()
            fault = self.authorization_fault(request, body)
            if fault is not None:
                self.refused.append((request.url.path, fault))
                return JSONResponse({"code": "SIGN_ERROR", "message": fault}, status_code=401)
            return await handler(request, body)

        return guarded

    def authorization_fault(self, request: Request, body: bytes) -> str | None:
        """Why a request is not signed by this merchant, in WeChat Pay's words; or None."""
        header = request.headers.get("authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme != SCHEME:
            return "Http头Authorization值格式错误,请参考《微信支付商户REST API签名规则》"
        fields = dict(_AUTH_FIELD.findall(rest))
        names = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
        if any(not fields.get(name) for name in names):
            return "Http头Authorization值格式错误,请参考《微信支付商户REST API签名规则》"
        if fields["mchid"] != self.mchid:
            return f"商户号 {fields['mchid']} 不存在或与证书不匹配"
        if fields["serial_no"] != self.merchant_serial:
            return "商户证书序列号有误。请使用签名私钥匹配的证书序列号"
        try:
            skew = abs(time.time() - int(fields["timestamp"]))
        except ValueError:
            return "Http头Authorization值格式错误,timestamp 不是整数"
        if skew > CLOCK_SKEW:
            return "请求的时间戳已过期,请检查系统时间"
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        target = raw_path.decode("latin-1")
        if request.url.query:
            target += "?" + request.url.query
        message = (
            f"{request.method}\n{target}\n{fields['timestamp']}\n{fields['nonce_str']}\n"
            f"{body.decode('utf-8', errors='replace')}\n"
        )
        try:
            self.merchant_key.public_key().verify(
                base64.b64decode(fields["signature"]),
                message.encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (InvalidSignature, ValueError):
            return "错误的签名,验签失败"
        return None

    def signed_headers(
        self, text: str, *, timestamp: int | None = None, key: rsa.RSAPrivateKey | None = None
    ) -> dict[str, str]:
        """The headers WeChat Pay signs an answer or a notify with."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        nonce = _alnum(32)
        signer = key or (self.stray_key if self.tamper_answers else self.platform_key)
        return {
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Timestamp": stamp,
            "Wechatpay-Serial": self.public_key_id,
            "Wechatpay-Signature": _sign(signer, f"{stamp}\n{nonce}\n{text}\n"),
            "Wechatpay-Signature-Type": SCHEME,
            "Request-ID": str(uuid.uuid4()),
        }

    def _answer(self, status: int, data: dict[str, Any] | None = None) -> Response:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":")) if data else ""
        headers = self.signed_headers(text)
        if data is None:
            return Response(status_code=status, headers=headers)
        headers["Content-Type"] = "application/json; charset=utf-8"
        return Response(text.encode(), status_code=status, headers=headers)

    # -- the API

    async def create(self, request: Request, body: bytes) -> Response:
        status, data = self._create(request, _json(body))
        return self._answer(status, data)

    def _create(self, request: Request, data: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(data, dict):
            return _error(400, "PARAM_ERROR", "请求体不是 JSON 对象")
        amount = data.get("amount")
        total = amount.get("total") if isinstance(amount, dict) else None
        for name in ("appid", "mchid", "description", "out_trade_no", "notify_url"):
            if not isinstance(data.get(name), str) or not data[name]:
                return _error(400, "PARAM_ERROR", f"输入源“/body/{name}”映射到字段失败")
        order_no: str = data["out_trade_no"]
        if data["mchid"] != self.mchid:
            return _error(400, "PARAM_ERROR", "mchid 与请求头的商户号不一致")
        if data["appid"] != self.appid:
            return _error(400, "PARAM_ERROR", "appid和mch_id不匹配")
        if not isinstance(total, int) or isinstance(total, bool) or total < 1:
            return _error(400, "PARAM_ERROR", "amount.total 应为不小于 1 的整数(分)")
        if (amount or {}).get("currency", "CNY") != "CNY":
            return _error(400, "PARAM_ERROR", "币种只支持 CNY")
        if not 6 <= len(order_no) <= 32 or not re.fullmatch(r"[0-9A-Za-z_\-*]+", order_no):
            return _error(400, "PARAM_ERROR", "out_trade_no 应为 6 到 32 位数字、字母或 _-*")
        expires = data.get("time_expire")
        if expires is not None:
            try:
                zoned = datetime.fromisoformat(expires).tzinfo is not None
            except (TypeError, ValueError):
                zoned = False
            if not zoned:
                return _error(400, "PARAM_ERROR", "time_expire 不是 RFC 3339 时间")
        known = self.orders.get(order_no)
        if known is not None:
            if known.state != "pending":
                return _error(
                    400, "ORDERPAID" if _paid(known) else "ORDER_CLOSED", "订单已支付或已关闭"
                )
            if known.amount != total:
                return _error(400, "OUT_TRADE_NO_USED", "商户订单号重复")
            return 200, {"code_url": known.extra["code_url"]}
        token = secrets.token_urlsafe(12)
        code_url = str(request.url_for("cashier", token=token))
        self.cashier[token] = order_no
        self.orders[order_no] = DoubleOrder(
            order_no=order_no,
            trade_no="4200" + _digits(24),
            amount=total,
            currency="CNY",
            notify_url=data["notify_url"],
            extra={
                "code_url": code_url,
                "description": data["description"],
                "time_expire": expires or "",
                "openid": "o" + _alnum(27),
            },
        )
        return 200, {"code_url": code_url}

    async def query(self, request: Request, body: bytes) -> Response:
        if request.query_params.get("mchid") != self.mchid:
            return self._answer(*_error(400, "PARAM_ERROR", "mchid 与请求头的商户号不一致"))
        order = self.orders.get(request.path_params["no"])
        if order is None:
            return self._answer(*_error(404, "ORDER_NOT_EXIST", "订单不存在"))
        return self._answer(200, self.transaction(order))

    async def close(self, request: Request, body: bytes) -> Response:
        data = _json(body)
        if not isinstance(data, dict) or data.get("mchid") != self.mchid:
            return self._answer(*_error(400, "PARAM_ERROR", "mchid 与请求头的商户号不一致"))
        order = self.orders.get(request.path_params["no"])
        if order is None:
            return self._answer(*_error(404, "ORDER_NOT_EXIST", "订单不存在"))
        if order.state in ("paid", "refunded"):
            return self._answer(*_error(400, "ORDERPAID", "订单已支付"))
        order.state = "closed"
        return self._answer(204)

    async def refund(self, request: Request, body: bytes) -> Response:
        return self._answer(*self._refund(_json(body)))

    def _refund(self, data: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(data, dict):
            return _error(400, "PARAM_ERROR", "请求体不是 JSON 对象")
        refund_no, amount = data.get("out_refund_no"), data.get("amount")
        if not isinstance(refund_no, str) or not refund_no or not isinstance(amount, dict):
            return _error(400, "PARAM_ERROR", "缺少 out_refund_no 或 amount")
        if refund_no in self.refunds:
            return 200, self.refunds[refund_no]  # the same refund, asked again
        order = self.orders.get(str(data.get("out_trade_no")))
        if order is None:
            return _error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        if order.state not in ("paid", "refunded"):
            return _error(400, "INVALID_REQUEST", "订单未支付,不能退款")
        refund, total = amount.get("refund"), amount.get("total")
        if not isinstance(refund, int) or isinstance(refund, bool) or refund < 1:
            return _error(400, "PARAM_ERROR", "amount.refund 应为不小于 1 的整数(分)")
        if total != order.amount:
            return _error(400, "PARAM_ERROR", "amount.total 与原订单金额不一致")
        if refund > order.amount - order.refunded:
            return _error(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        order.refunded += refund
        order.state = "refunded"
        self.refunds[refund_no] = {
            "refund_id": "50" + _digits(30),
            "out_refund_no": refund_no,
            "transaction_id": order.trade_no,
            "out_trade_no": order.order_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": _rfc3339(datetime.now(UTC)),
            "status": self.refund_status,
            "amount": {
                "total": order.amount,
                "refund": refund,
                "payer_total": order.amount,
                "payer_refund": refund,
                "currency": "CNY",
            },
        }
        return 200, self.refunds[refund_no]

    async def trade_bill(self, request: Request, body: bytes) -> Response:
        try:
            day = date.fromisoformat(request.query_params.get("bill_date", ""))
        except ValueError:
            return self._answer(*_error(400, "PARAM_ERROR", "bill_date 应为 yyyy-MM-DD"))
        paid = [
            order
            for order in self.orders.values()
            if _paid(order) and _paid_at(order).astimezone(BEIJING).date() == day
        ]
        if not paid:
            return self._answer(*_error(400, "NO_STATEMENT_EXIST", "账单文件不存在"))
        bill = self.bill(paid)
        token = secrets.token_urlsafe(16)
        self.bills[token] = bill
        url = f"{request.url_for('bill_file')}?token={token}"
        return self._answer(
            200,
            {
                "hash_type": "SHA1",
                "hash_value": hashlib.sha1(bill).hexdigest(),  # noqa: S324 - as WeChat Pay does
                "download_url": url,
            },
        )

    async def bill_file(self, request: Request, body: bytes) -> Response:
        bill = self.bills.get(request.query_params.get("token", ""))
        if bill is None:
            return self._answer(*_error(400, "INVALID_REQUEST", "账单下载链接已失效"))
        return Response(bill, media_type="text/plain; charset=utf-8")  # not signed, as real

    def bill(self, orders: list[DoubleOrder]) -> bytes:
        """The trade bill (``bill_type=SUCCESS``) of ``orders``: WeChat Pay's CSV."""
        lines = [BILL_HEADER]
        fees = Decimal(0)
        for order in orders:
            fee = (order.amount * FEE_RATE).quantize(Decimal(1))
            fees += fee
            row = {
                "交易时间": _paid_at(order).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
                "公众账号ID": self.appid,
                "商户号": self.mchid,
                "微信订单号": order.trade_no,
                "商户订单号": order.order_no,
                "用户标识": order.extra.get("openid", ""),
                "交易类型": "NATIVE",
                "交易状态": "SUCCESS",
                "付款银行": "OTHERS",
                "货币种类": "CNY",
                "应结订单金额": _yuan(order.amount),
                "代金券金额": "0.00",
                "微信退款单号": "0",
                "商户退款单号": "0",
                "退款金额": "0.00",
                "充值券退款金额": "0.00",
                "商品名称": order.extra.get("description", ""),
                "手续费": _yuan(fee),
                "费率": "0.60%",
                "订单金额": _yuan(order.amount),
                "申请退款金额": "0.00",
            }
            lines.append(",".join("`" + row.get(name, "") for name in BILL_HEADER.split(",")))
        total = sum(order.amount for order in orders)
        lines.append(BILL_TOTALS_HEADER)
        summary = (
            str(len(orders)),
            _yuan(total),
            "0.00",
            "0.00",
            _yuan(fees),
            _yuan(total),
            "0.00",
        )
        lines.append(",".join("`" + value for value in summary))
        return ("\r\n".join(lines) + "\r\n").encode()

    # -- the payer, and the notifies

    async def cashier_page(self, request: Request) -> Response:
        order_no = self.cashier.get(request.path_params["token"])
        order = self.orders.get(order_no or "")
        if order is None:
            return HTMLResponse(_page("二维码已失效", "<p>找不到这笔订单。</p>"), status_code=404)
        expires = order.extra.get("time_expire", "")
        expired = bool(expires) and datetime.fromisoformat(expires) < datetime.now(UTC)
        if request.method == "POST" and order.state == "pending" and not expired:
            self.pay(order.order_no)
        description = html.escape(order.extra.get("description", ""))
        price = f"¥{_yuan(order.amount)}"
        if order.state in ("paid", "refunded"):
            body = f'<p id="result">支付成功</p><p>{description}</p><p>{price}</p>'
        elif order.state == "closed" or expired:
            body = f'<p id="result">订单已关闭或已过期</p><p>{description}</p>'
        else:
            body = (
                f'<p>{description}</p><p id="price">{price}</p>'
                '<form method="post"><button id="pay" type="submit">确认支付</button></form>'
            )
        return HTMLResponse(_page("微信支付", body))

    def transaction(self, order: DoubleOrder, *, mchid: str | None = None) -> dict[str, Any]:
        """The transaction as the query answers it and a notify carries it."""
        state = TRADE_STATES[order.state]
        data: dict[str, Any] = {
            "appid": self.appid,
            "mchid": mchid or self.mchid,
            "out_trade_no": order.order_no,
            "trade_type": "NATIVE",
            "trade_state": state,
            "trade_state_desc": TRADE_STATE_DESC[state],
            "attach": "",
            "amount": {"total": order.amount, "currency": "CNY", "payer_currency": "CNY"},
        }
        if _paid(order):
            data.update(
                transaction_id=order.trade_no,
                bank_type="OTHERS",
                success_time=_rfc3339(_paid_at(order)),
                payer={"openid": order.extra.get("openid", "")},
            )
            data["amount"]["payer_total"] = order.amount
        return data

    def notify_for(self, order_no: str, *, spoil: Spoil | None = None) -> PreparedNotify:
        order = self.orders[order_no]
        if spoil is None:
            assert _paid(order), f"{order_no} is not paid"
        now = datetime.now(UTC) - (STALE if spoil == "stale" else timedelta(0))
        transaction = self.transaction(
            order, mchid=self.other_mchid if spoil == "merchant" else None
        )
        # A spoiled notify of an order not paid here still says it was.
        transaction.update(trade_state="SUCCESS", trade_state_desc="支付成功")
        transaction.setdefault("transaction_id", order.trade_no)
        transaction.setdefault("success_time", _rfc3339(now))
        if spoil == "amount":
            transaction["amount"]["total"] = order.amount + 1
            transaction["amount"]["payer_total"] = order.amount + 1
        text = self.envelope(transaction, created=now)
        if spoil == "malformed":
            text = text[: len(text) // 2]  # cut off: still signed, not JSON
        headers = self.signed_headers(
            text,
            timestamp=int(now.timestamp()),
            key=self.stray_key if spoil == "signature" else self.platform_key,
        )
        headers["Content-Type"] = "application/json"
        return PreparedNotify("POST", order.notify_url, headers, text.encode())

    def envelope(self, transaction: dict[str, Any], *, created: datetime) -> str:
        """A TRANSACTION.SUCCESS notify's body: the transaction encrypted under the APIv3 key."""
        nonce, associated = _alnum(12), "transaction"
        ciphertext = AESGCM(self.apiv3_key.encode()).encrypt(
            nonce.encode(),
            json.dumps(transaction, ensure_ascii=False).encode(),
            associated.encode(),
        )
        body = {
            "id": str(uuid.uuid4()),
            "create_time": _rfc3339(created),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(ciphertext).decode(),
                "associated_data": associated,
                "nonce": nonce,
            },
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _paid(order: DoubleOrder) -> bool:
    return order.state in ("paid", "refunded")


def _paid_at(order: DoubleOrder) -> datetime:
    # A test may mark an order paid by hand (its state alone): paid now, then.
    return order.paid_at or datetime.now(UTC)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    )
