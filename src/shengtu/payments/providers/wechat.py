"""微信支付 (WeChat Pay) API v3, Native pay: the payer scans a ``code_url`` shown as a QR code.

- every request is signed with the merchant's API key (RSA-SHA256, PKCS#1 v1.5) over
  ``METHOD\\nPATH?QUERY\\ntimestamp\\nnonce\\nbody\\n`` and carries it in ``Authorization:
  WECHATPAY2-SHA256-RSA2048 mchid=..,nonce_str=..,signature=..,timestamp=..,serial_no=..``
  (``wechatpayv3.utils.build_authorization``). The requests go out on the service's async
  httpx client: the SDK's own client is synchronous ``requests`` and fixes the gateway.
- every answer we act on (a 2xx, and the 404 that says an order does not exist) is believed
  only when ``Wechatpay-Signature`` verifies with 微信支付公钥 over ``timestamp\\nnonce\\nbody\\n``
  and ``Wechatpay-Serial`` is that key's id. The platform-certificate mode (a serial that is a
  certificate's, fetched from ``/v3/certificates``) is not spoken: WeChat Pay moves merchants
  to the public key, and one key to configure is one less thing to go stale.
- create: ``POST /v3/pay/transactions/native`` -> ``{code_url}``.
- notify: a POST of ``{id, create_time, resource_type: "encrypt-resource", event_type:
  "TRANSACTION.SUCCESS", summary, resource: {algorithm: "AEAD_AES_256_GCM", ciphertext,
  associated_data, nonce, original_type}}`` with the same signed headers as an answer; the
  timestamp must be within five minutes, the resource opens with AES-256-GCM under the APIv3
  key into the transaction (the query's answer). Answered 204 when believed, else 400
  ``{"code": "FAIL", "message": "失败"}`` (WeChat Pay sends it again).
- query: ``GET /v3/pay/transactions/out-trade-no/{no}?mchid=`` (404 ``ORDER_NOT_EXIST``: no
  such order); close: ``POST .../{no}/close``; refund: ``POST /v3/refund/domestic/refunds``.
- daily: ``GET /v3/bill/tradebill?bill_date=&bill_type=SUCCESS`` -> ``download_url``, the CSV
  bill (its SHA-1 given in the signed answer; the file itself is not signed), each value
  behind a backquote, amounts in yuan, times in Beijing time.
- errors: ``{code, message}`` with an HTTP status; a 5xx or a lost answer may have acted.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from wechatpayv3.utils import (
    aes_decrypt,
    build_authorization,
    load_private_key,
    load_public_key,
    rsa_verify,
)

from shengtu.payments.base import (
    Answer,
    Checkout,
    ConfigField,
    Notify,
    NotifyRefused,
    OrderRef,
    Payment,
    PaymentProvider,
    PaymentState,
    ProviderError,
    Refund,
    Urls,
)
from shengtu.payments.currency import fen

GATEWAY = "https://api.mch.weixin.qq.com"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
# WeChat Pay's own tolerance for a notify's timestamp, either side of now.
NOTIFY_TOLERANCE = 300
APIV3_KEY_BYTES = 32
DESCRIPTION_MAX = 127  # characters, as the create takes them
BEIJING = ZoneInfo("Asia/Shanghai")

# trade_state -> ours. USERPAYING (entering a password) and PAYERROR (the bank said no) may
# still end paid: pending. REFUND is a paid order with a refund, whole or part.
STATES: dict[str, PaymentState] = {
    "SUCCESS": "paid",
    "REFUND": "refunded",
    "NOTPAY": "pending",
    "USERPAYING": "pending",
    "PAYERROR": "pending",
    "CLOSED": "closed",
    "REVOKED": "closed",
}
# A refund's status: done, on its way, or it will not be.
REFUND_DONE = "SUCCESS"
REFUND_PENDING = "PROCESSING"
# The bill's columns we read (its header names them; their order has changed before).
BILL_TIME = "交易时间"
BILL_MERCHANT = "商户号"
BILL_TRADE_NO = "微信订单号"
BILL_ORDER_NO = "商户订单号"
BILL_STATE = "交易状态"
BILL_CURRENCY = "货币种类"
BILL_AMOUNT = ("订单金额", "应结订单金额")  # the first found; the older bills lack 订单金额
BILL_TOTALS = "总交易单数"  # the summary after the last row

NOT_BELIEVED = json.dumps({"code": "FAIL", "message": "失败"}, ensure_ascii=False).encode()


class BadTransaction(ValueError):
    """A transaction (notified or queried) without what a payment needs."""


class WechatPayProvider(PaymentProvider):
    kind = "wechat"
    label = "微信支付"
    fields = (
        ConfigField("gateway", "API 地址", default=GATEWAY),
        ConfigField("mchid", "商户号 (mchid)"),
        ConfigField("appid", "AppID(公众号、小程序或移动应用)"),
        ConfigField("cert_serial_no", "商户 API 证书序列号"),
        ConfigField(
            "private_key", "商户 API 证书私钥 (apiclient_key.pem)", secret=True, multiline=True
        ),
        ConfigField("apiv3_key", "APIv3 密钥(32 字节)", secret=True),
        ConfigField("wechatpay_public_key", "微信支付公钥 (PEM)", multiline=True),
        ConfigField("wechatpay_public_key_id", "微信支付公钥 ID (PUB_KEY_ID_...)"),
    )
    redact = frozenset({"authorization", "wechatpay-signature"})
    currencies = frozenset({"CNY"})

    @property
    def merchant(self) -> str:
        return self.config["mchid"]

    @property
    def gateway(self) -> str:
        return (self.config.get("gateway") or GATEWAY).rstrip("/")

    # -- the keys, read once and on first use: a bad one is the operator's error to read

    @cached_property
    def _private_key(self) -> RSAPrivateKey:
        try:
            key = load_private_key(self.config.get("private_key", ""))
        except Exception:
            key = None
        if not isinstance(key, RSAPrivateKey):
            raise ProviderError("微信支付商户私钥无法读取:应为 apiclient_key.pem 的 PEM 内容")
        return key

    @cached_property
    def _public_key(self) -> RSAPublicKey:
        try:
            key = load_public_key(self.config.get("wechatpay_public_key", ""))
        except Exception:
            key = None
        if not isinstance(key, RSAPublicKey):
            raise ProviderError("微信支付公钥无法读取:应为商户平台下载的 PEM 公钥")
        return key

    @cached_property
    def _apiv3_key(self) -> str:
        key = self.config.get("apiv3_key", "")
        if len(key.encode()) != APIV3_KEY_BYTES:
            raise ProviderError("微信支付 APIv3 密钥应为 32 个字节")
        return key

    # -- the protocol

    async def create(self, order: OrderRef, urls: Urls) -> Checkout:
        body: dict[str, Any] = {
            "appid": self.config["appid"],
            "mchid": self.merchant,
            "description": order.subject[:DESCRIPTION_MAX],
            "out_trade_no": order.order_no,
            "time_expire": rfc3339(order.expires_at),
            "notify_url": urls.notify,
            "amount": {"total": order.amount, "currency": order.currency},
        }
        if order.client_ip:
            body["scene_info"] = {"payer_client_ip": order.client_ip}
        answer = await self._call("POST", "/v3/pay/transactions/native", body=body)
        code_url = self._data(answer).get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise ProviderError("微信支付的下单应答缺少 code_url")
        return Checkout(kind="qr", url=code_url)

    async def verify(self, notify: Notify) -> Payment:
        if notify.method != "POST":
            raise NotifyRefused("微信支付的通知应为 POST")
        try:
            text = notify.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotifyRefused("通知不是 UTF-8 文本") from exc
        try:
            fault = self._signature_fault(notify.headers, text, fresh=True)
        except ProviderError as exc:  # the configured key cannot be read
            raise NotifyRefused(exc.reason) from exc
        if fault:
            raise NotifyRefused(fault, order_no=self._named_order(text))
        transaction = self._opened(text)
        try:
            return payment_of(transaction)
        except BadTransaction as exc:
            raise NotifyRefused(
                f"通知的交易内容不全:{exc}", order_no=_order_no(transaction)
            ) from exc

    def answer(self, believed: bool) -> Answer:
        if believed:
            return Answer(204)
        return Answer(400, NOT_BELIEVED, "application/json")

    async def query(self, order: OrderRef) -> Payment | None:
        path = f"/v3/pay/transactions/out-trade-no/{quote(order.order_no, safe='')}"
        answer = await self._call("GET", path, params={"mchid": self.merchant})
        if answer.status_code == 404 and _code(answer) == "ORDER_NOT_EXIST":
            # Believed only when signed: a forged "no such order" must not pass for one.
            self._check_answer(answer)
            return None
        try:
            return payment_of(self._data(answer))
        except BadTransaction as exc:
            raise ProviderError(f"微信支付的查询应答内容不全:{exc}") from exc

    async def close(self, order: OrderRef) -> None:
        path = f"/v3/pay/transactions/out-trade-no/{quote(order.order_no, safe='')}/close"
        answer = await self._call("POST", path, body={"mchid": self.merchant})
        if answer.status_code == 404 and _code(answer) == "ORDER_NOT_EXIST":
            return  # never created there: nothing to close
        self._data(answer)

    async def refund(self, order: OrderRef, amount: int, refund_no: str, reason: str) -> Refund:
        body: dict[str, Any] = {
            "out_trade_no": order.order_no,
            "out_refund_no": refund_no,
            "amount": {"refund": amount, "total": order.amount, "currency": order.currency},
        }
        if reason:
            body["reason"] = reason[:80]
        data = self._data(await self._call("POST", "/v3/refund/domestic/refunds", body=body))
        status = data.get("status")
        refund_id = data.get("refund_id")
        if status == REFUND_DONE:
            return Refund(refund_no, refund_id, "done")
        if status == REFUND_PENDING:
            return Refund(refund_no, refund_id, "pending")
        # CLOSED or ABNORMAL (the payer's card was closed, say): the money did not go back.
        raise ProviderError(f"微信支付的退款未成功(状态 {status}),请在商户平台处理")

    async def daily(self, day: date, tz: str) -> list[Payment] | None:
        answer = await self._call(
            "GET",
            "/v3/bill/tradebill",
            params={"bill_date": day.isoformat(), "bill_type": "SUCCESS"},
        )
        if answer.status_code == 400 and _code(answer) == "NO_STATEMENT_EXIST":
            self._check_answer(answer)
            return []  # no payment that day: WeChat Pay makes no bill
        data = self._data(answer)
        url, digest = data.get("download_url"), data.get("hash_value")
        if not isinstance(url, str) or not isinstance(digest, str):
            raise ProviderError("微信支付的账单应答缺少 download_url 或 hash_value")
        if data.get("hash_type", "SHA1") != "SHA1":
            raise ProviderError(f"微信支付账单的摘要算法 {data.get('hash_type')} 不受支持")
        if not url.startswith(self.gateway + "/"):
            # The download is signed with our key: it goes to WeChat Pay and nowhere else.
            raise ProviderError("微信支付账单的下载地址不在所配置的 API 地址下")
        bill = await self._call("GET", url, absolute=True)
        if bill.status_code != 200:
            raise _refusal(bill)
        if not hmac.compare_digest(hashlib.sha1(bill.content).hexdigest(), digest.lower()):  # noqa: S324 - WeChat Pay's digest
            raise ProviderError("微信支付账单文件的 SHA-1 与应答不符")
        try:
            return bill_payments(bill.content.decode("utf-8-sig"))
        except (UnicodeDecodeError, BadTransaction) as exc:
            raise ProviderError(f"微信支付账单文件无法读取:{exc}") from exc

    # -- the wire

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        absolute: bool = False,
    ) -> httpx.Response:
        """The answer to a signed request, whatever its status."""
        url = httpx.URL(path if absolute else self.gateway + path)
        if params:
            url = url.copy_merge_params(params)
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":")) if body else ""
        authorization = build_authorization(
            url.raw_path.decode("ascii"),
            method,
            self.merchant,
            self.config["cert_serial_no"],
            self._private_key,
            data=text,
        )
        headers = {
            "Authorization": authorization,
            "Accept": "application/json",
            "Wechatpay-Serial": self.config["wechatpay_public_key_id"],
        }
        if body:
            headers["Content-Type"] = "application/json"
        try:
            return await self.http.request(method, url, headers=headers, content=text.encode())
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ProviderError(f"无法连接微信支付:{type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            # Sent, maybe acted on, its answer lost: ask again before doing it again.
            raise ProviderError(f"微信支付没有应答:{type(exc).__name__}", certain=False) from exc

    def _data(self, answer: httpx.Response) -> dict[str, Any]:
        """The verified JSON of a 2xx answer ({} for a 204), or the refusal raised."""
        if not 200 <= answer.status_code < 300:
            raise _refusal(answer)
        self._check_answer(answer)
        if not answer.content:
            return {}
        try:
            data = json.loads(answer.content)
        except ValueError as exc:
            raise ProviderError("微信支付的应答不是 JSON") from exc
        if not isinstance(data, dict):
            raise ProviderError("微信支付的应答不是 JSON 对象")
        return data

    def _check_answer(self, answer: httpx.Response) -> None:
        try:
            text = answer.content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProviderError("微信支付的应答不是 UTF-8 文本") from exc
        fault = self._signature_fault(answer.headers, text, fresh=False)
        if fault:
            raise ProviderError(f"微信支付的应答未通过验签:{fault}")

    def _signature_fault(self, headers: Mapping[str, str], text: str, *, fresh: bool) -> str | None:
        """Why a signed message (an answer, a notify) is not WeChat Pay's, or None.
        ``fresh``: its timestamp must also be within the tolerance (a notify's)."""
        # httpx's headers are case-insensitive; a Notify's names are lower-case.
        signature = headers.get("wechatpay-signature", "")
        timestamp = headers.get("wechatpay-timestamp", "")
        nonce = headers.get("wechatpay-nonce", "")
        serial = headers.get("wechatpay-serial", "")
        kind = headers.get("wechatpay-signature-type", SIGNATURE_TYPE)
        if not (signature and timestamp and nonce and serial):
            return "缺少 Wechatpay-Signature/Timestamp/Nonce/Serial 头"
        if kind != SIGNATURE_TYPE:
            return f"不支持的签名类型 {kind}"
        if serial != self.config["wechatpay_public_key_id"]:
            return f"签名序列号 {serial} 不是所配置的微信支付公钥 ID"
        if fresh:
            try:
                age = abs(time.time() - int(timestamp))
            except ValueError:
                return "Wechatpay-Timestamp 不是整数"
            if age > NOTIFY_TOLERANCE:
                return f"时间戳与现在相差 {int(age)} 秒,超过 5 分钟"
        try:
            good = rsa_verify(timestamp, nonce, text, signature, self._public_key)
        except ValueError:
            good = False
        return None if good else "签名验证失败"

    def _named_order(self, text: str) -> str | None:
        """The order a refused notify names, for the operator's page of the order: its
        resource opens only with our APIv3 key, so whoever sealed it held that key (but
        a signature that fails is still refused)."""
        try:
            return _order_no(self._opened(text))
        except NotifyRefused:
            return None

    def _opened(self, text: str) -> dict[str, Any]:
        """The transaction an (already verified) notify carries, decrypted."""
        try:
            envelope = json.loads(text)
            resource = envelope["resource"]
            kind, algorithm = envelope["resource_type"], resource["algorithm"]
            ciphertext, nonce = resource["ciphertext"], resource["nonce"]
            associated = resource.get("associated_data") or ""
        except (ValueError, KeyError, TypeError) as exc:
            raise NotifyRefused("通知格式错误,无法解析") from exc
        if not all(isinstance(part, str) for part in (ciphertext, nonce, associated)):
            raise NotifyRefused("通知格式错误:resource 的字段应为字符串")
        if kind != "encrypt-resource" or algorithm != "AEAD_AES_256_GCM":
            raise NotifyRefused(f"不支持的通知资源 {kind}/{algorithm}")
        if envelope.get("event_type") != "TRANSACTION.SUCCESS":
            raise NotifyRefused(f"不是支付成功通知:{envelope.get('event_type')}")
        try:
            plain = aes_decrypt(nonce, ciphertext, associated, self._apiv3_key)
        except ProviderError as exc:
            raise NotifyRefused(exc.reason) from exc
        except ValueError:  # a ciphertext that is not base64, a nonce of the wrong size
            plain = None
        if plain is None:
            raise NotifyRefused("通知资源解密失败:APIv3 密钥不符或内容被改动")
        try:
            transaction = json.loads(plain)
        except ValueError as exc:
            raise NotifyRefused("通知资源解密后不是 JSON") from exc
        if not isinstance(transaction, dict):
            raise NotifyRefused("通知资源解密后不是 JSON 对象")
        return transaction


def rfc3339(moment: datetime) -> str:
    """``2026-12-05T21:00:00+08:00``; a naive time is UTC (as the database keeps times)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def payment_of(transaction: Mapping[str, Any]) -> Payment:
    """The payment a transaction (a notify's resource, a query's answer) reports."""
    amount = transaction.get("amount")
    if not isinstance(amount, Mapping):
        raise BadTransaction("缺少 amount")
    total = amount.get("total")
    if not isinstance(total, int) or isinstance(total, bool):
        raise BadTransaction("amount.total 不是整数")
    state = STATES.get(str(transaction.get("trade_state")))
    if state is None:
        raise BadTransaction(f"未知的 trade_state {transaction.get('trade_state')}")
    for name in ("mchid", "out_trade_no"):
        if not isinstance(transaction.get(name), str) or not transaction[name]:
            raise BadTransaction(f"缺少 {name}")
    paid_at = None
    if transaction.get("success_time"):
        try:
            paid_at = datetime.fromisoformat(str(transaction["success_time"])).astimezone(UTC)
        except ValueError as exc:
            raise BadTransaction("success_time 不是 RFC 3339 时间") from exc
    return Payment(
        order_no=transaction["out_trade_no"],
        merchant=transaction["mchid"],
        amount=total,
        currency=str(amount.get("currency") or "CNY"),
        state=state,
        trade_no=transaction.get("transaction_id") or None,
        paid_at=paid_at,
    )


def bill_payments(text: str) -> list[Payment]:
    """The payments of a trade bill (``bill_type=SUCCESS``)."""
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None:
        return []
    column = {name.strip().lstrip("`"): i for i, name in enumerate(header)}
    amount_column = next((name for name in BILL_AMOUNT if name in column), None)
    needed = (BILL_TIME, BILL_MERCHANT, BILL_TRADE_NO, BILL_ORDER_NO, BILL_STATE, BILL_CURRENCY)
    missing = [name for name in needed if name not in column]
    if amount_column is None or missing:
        raise BadTransaction(f"账单缺少列 {', '.join(missing) or BILL_AMOUNT[0]}")
    payments = []
    for row in rows:
        values = [value.strip().lstrip("`") for value in row]
        if not values or values[0] == BILL_TOTALS:
            break
        if len(values) < len(header):
            raise BadTransaction("账单行的列数不足")
        state = STATES.get(values[column[BILL_STATE]])
        if state is None:
            raise BadTransaction(f"未知的交易状态 {values[column[BILL_STATE]]}")
        payments.append(
            Payment(
                order_no=values[column[BILL_ORDER_NO]],
                merchant=values[column[BILL_MERCHANT]],
                amount=bill_fen(values[column[amount_column]]),
                currency=values[column[BILL_CURRENCY]] or "CNY",
                state=state,
                trade_no=values[column[BILL_TRADE_NO]] or None,
                paid_at=bill_time(values[column[BILL_TIME]]),
            )
        )
    return payments


def bill_fen(yuan: str) -> int:
    """A bill's yuan in fen (:func:`shengtu.payments.currency.fen`, exact and strict)."""
    try:
        return fen(yuan)
    except ValueError:
        raise BadTransaction(f"金额 {yuan!r} 不是以元为单位的金额") from None


def bill_time(text: str) -> datetime:
    try:
        local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError as exc:
        raise BadTransaction(f"交易时间 {text} 无法读取") from exc
    return local.replace(tzinfo=BEIJING).astimezone(UTC)


def _order_no(transaction: Mapping[str, Any]) -> str | None:
    found = transaction.get("out_trade_no")
    return found if isinstance(found, str) and found else None


def _code(answer: httpx.Response) -> str:
    try:
        data = json.loads(answer.content)
    except ValueError:
        return ""
    return str(data.get("code", "")) if isinstance(data, dict) else ""


def _refusal(answer: httpx.Response) -> ProviderError:
    """WeChat Pay's refusal, in its own words (its messages are Chinese)."""
    try:
        data = json.loads(answer.content)
    except ValueError:
        data = None
    code = message = ""
    if isinstance(data, dict):
        code, message = str(data.get("code", "")), str(data.get("message", ""))
    reason = f"微信支付拒绝了请求(HTTP {answer.status_code}{' ' + code if code else ''})"
    if message:
        reason += f":{message[:200]}"
    # A 5xx (SYSTEM_ERROR) may have acted: ask before doing it again.
    return ProviderError(reason, certain=answer.status_code < 500)
