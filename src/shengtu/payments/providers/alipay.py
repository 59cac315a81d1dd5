"""支付宝 (the Alipay open platform, public-key mode): computer-site pay or a scan-to-pay QR
code, verified notifies, query, refund, close and the daily bill. Every answer we give a
meaning to is here.

- Every request is one call of the gateway (``config["gateway"]``, the full URL, by
  default ``https://openapi.alipay.com/gateway.do``): the common parameters (``app_id``,
  ``method``, ``charset`` utf-8, ``sign_type`` RSA2, ``timestamp`` in Beijing time,
  ``version`` 1.0) and ``biz_content`` (JSON), signed SHA256withRSA with the app's private
  key over the sorted ``k=v`` pairs. python-alipay-sdk builds and signs that string; we
  POST it as a form with our own async client (the SDK's calls are synchronous urllib).
- The answer is ``{"<method>_response": {...}, "sign": ...}``; the signature is Alipay's,
  over the exact text of the ``<method>_response`` value, checked with Alipay's public key.
  ``code`` 10000 is success; anything else is refused with ``sub_code``/``sub_msg``. The
  gateway leaves some refusals of the request itself unsigned (isv.invalid-signature,
  isv.invalid-app-id): those are believed as refusals only, never a success.
- ``mode`` "page": ``alipay.trade.page.pay`` is not called by us at all: the payer's browser
  goes to the gateway with the signed query and Alipay shows its cashier. ``mode`` "qr":
  ``alipay.trade.precreate`` answers ``qr_code``, which the console shows as a QR code.
  Either way Alipay knows the trade only once the payer opened the cashier or scanned the
  code: until then ``alipay.trade.query`` answers ACQ.TRADE_NOT_EXIST (``query`` → None).
- Notifies: a POST form (``notify_type`` trade_status_sync, ``notify_id``, ``app_id``,
  ``out_trade_no``, ``trade_no``, ``trade_status``, ``total_amount`` "10.00", ...), signed by
  Alipay over the sorted non-empty fields but ``sign`` and ``sign_type``; answered with the
  plain text ``success`` (anything else and Alipay sends it again, 8 times over 25 hours).
  The merchant a notify's :class:`Payment` carries is its ``app_id``. A replayed notify is
  one Alipay really signed: it verifies, and the service sees a repeat.
- A refund is one per ``out_request_no`` (our refund number): ``fund_change`` Y is done;
  N (a repeat, or still under way) is settled by ``alipay.trade.fastpay.refund.query``.
- Amounts are yuan with two decimals on the wire, fen here; Alipay takes only CNY.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
import zipfile
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
from alipay import AliPay

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
from shengtu.payments.currency import fen, yuan

GATEWAY = "https://openapi.alipay.com/gateway.do"
# Alipay's clock and every time it writes or reads: Beijing time, no zone on the wire.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SUCCESS = "10000"
# "Service unavailable": Alipay may or may not have acted (its documentation says: ask
# again with a query before retrying).
UNKNOWN = "20000"
NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
BILL_NOT_EXIST = "isp.bill_not_exist"
REFUND_SUCCESS = "REFUND_SUCCESS"
# Alipay refuses a subject with these (and one above 256 characters).
SUBJECT_FORBIDDEN = str.maketrans("", "", "/=&")
SUBJECT_CHARS = 256
FORM = "application/x-www-form-urlencoded;charset=utf-8"
MODES = ("page", "qr")
# Long enough to read a sub_msg, short enough for a kept reason: isv.invalid-signature's
# sub_msg quotes the whole string the gateway checked.
REASON_CHARS = 300
PAID = {"TRADE_SUCCESS", "TRADE_FINISHED"}
# The bill's detail file and the columns we read (the order of columns may change: read
# by name).
BILL_DETAIL = "业务明细.csv"
BILL_KIND_TRADE = "交易"


class AlipayRefused(ProviderError):
    """The gateway answered, and not with success: ``sub_code`` says why (ACQ.TRADE_NOT_EXIST,
    isv.invalid-signature, ...)."""

    def __init__(self, reason: str, sub_code: str, *, certain: bool = True) -> None:
        super().__init__(reason, certain=certain)
        self.sub_code = sub_code


def beijing(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime(TIME_FORMAT)


def from_beijing(text: str) -> datetime:
    """ "2024-05-01 12:00:00" (Beijing) → an aware UTC datetime; ValueError if it is not one."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=BEIJING).astimezone(UTC)


def key_material(text: str) -> str | bytes:
    """A key as the SDK reads it: a PEM as it is, or the bare base64 Alipay's console and key
    tool hand out (PKCS#8 or PKCS#1 for the private key, SubjectPublicKeyInfo for Alipay's
    public key) as the DER bytes it stands for."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        return text
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None


def signed_text(raw: str, key: str) -> str | None:
    """The exact text of ``key``'s value in the JSON answer ``raw``: what Alipay signed. The
    SDK's own locator counts braces and miscounts one inside a string, so this lets the JSON
    decoder find where the value ends."""
    found = re.search(r'"' + re.escape(key) + r'"\s*:\s*', raw)
    if found is None:
        return None
    try:
        value, end = json.JSONDecoder().raw_decode(raw, found.end())
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    return raw[found.end() : end]


def refusal_reason(content: Mapping[str, Any]) -> str:
    said = str(content.get("sub_msg") or content.get("msg") or "未说明原因")
    code = content.get("sub_code") or content.get("code") or ""
    return f"支付宝拒绝: {said[:REASON_CHARS]} ({code})"


class AlipayProvider(PaymentProvider):
    kind = "alipay"
    label = "支付宝"
    fields = (
        ConfigField("gateway", "网关地址", default=GATEWAY),
        ConfigField("app_id", "应用 APPID"),
        ConfigField("app_private_key", "应用私钥 (RSA2)", secret=True, multiline=True),
        ConfigField("alipay_public_key", "支付宝公钥", multiline=True),
        ConfigField("mode", "支付方式 (page: 电脑网站支付跳转, qr: 当面付扫码)", default="page"),
    )
    # A notify's only secret-like field: Alipay's signature (the rest is the trade, with
    # the buyer's account already masked by Alipay).
    redact: ClassVar[frozenset[str]] = frozenset({"sign"})

    def __init__(self, config: Mapping[str, str], http: httpx.AsyncClient) -> None:
        super().__init__(config, http)
        self._sdk: Any = None

    @property
    def merchant(self) -> str:
        return self.config.get("app_id", "")

    @property
    def gateway(self) -> str:
        return self.config.get("gateway") or GATEWAY

    @property
    def mode(self) -> str:
        return self.config.get("mode") or "page"

    def sdk(self) -> Any:
        """The SDK's client, which holds the keys: built once, on first use, so a method with
        an unreadable key is refused when used, saying which key."""
        if self._sdk is None:
            try:
                private = key_material(self.config.get("app_private_key", ""))
            except ValueError:
                raise ProviderError("应用私钥无法读取: 应为 PEM 或 base64") from None
            try:
                public = key_material(self.config.get("alipay_public_key", ""))
            except ValueError:
                raise ProviderError("支付宝公钥无法读取: 应为 PEM 或 base64") from None
            try:
                self._sdk = AliPay(
                    appid=self.merchant,
                    app_private_key_string=private,
                    alipay_public_key_string=public,
                    sign_type="RSA2",
                )
            except (ValueError, IndexError, TypeError):
                raise ProviderError("应用私钥或支付宝公钥无法读取: 应为 RSA 密钥") from None
            if not self._sdk.app_private_key.has_private():
                self._sdk = None
                raise ProviderError("应用私钥不是私钥: 是否填成了应用公钥?")
        return self._sdk

    def signed_query(self, method: str, biz: Mapping[str, Any], **common: str) -> str:
        """The signed request as a urlencoded string, ``biz`` as its biz_content."""
        client = self.sdk()
        data = client.build_body(method, dict(biz), timestamp=beijing(datetime.now(UTC)), **common)
        return str(client.sign_data(data))

    async def call(self, method: str, biz: Mapping[str, Any], **common: str) -> dict[str, Any]:
        """One gateway call: its ``<method>_response`` once Alipay's signature over it
        verifies and its code is success. Raises :class:`AlipayRefused` (the gateway said no)
        or :class:`ProviderError` (no believable answer)."""
        body = self.signed_query(method, biz, **common)
        try:
            answer = await self.http.post(
                self.gateway, content=body.encode(), headers={"Content-Type": FORM}
            )
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise ProviderError("连不上支付宝网关") from None
        except httpx.TimeoutException:
            raise ProviderError("支付宝网关超时未答", certain=False) from None
        except httpx.HTTPError as exc:
            reason = f"支付宝网关的连接中断 ({type(exc).__name__})"
            raise ProviderError(reason, certain=False) from None
        if answer.status_code != 200:
            raise ProviderError(
                f"支付宝网关答 HTTP {answer.status_code}", certain=answer.status_code < 500
            )
        # We asked in utf-8 (charset): Alipay answers in it. A byte changed on the way no
        # longer verifies, so undecodable bytes only need to fail the signature.
        return self.read_answer(method, answer.content.decode("utf-8", errors="replace"))

    def read_answer(self, method: str, raw: str) -> dict[str, Any]:
        key = method.replace(".", "_") + "_response"
        try:
            document = json.loads(raw)
        except json.JSONDecodeError:
            raise ProviderError("支付宝网关的回答不是 JSON", certain=False) from None
        if not isinstance(document, dict):
            raise ProviderError("支付宝网关的回答不是 JSON 对象", certain=False)
        if key not in document and "error_response" in document:
            key = "error_response"
        content = document.get(key)
        if not isinstance(content, dict):
            raise ProviderError(f"支付宝网关的回答没有 {key}", certain=False)
        code = str(content.get("code", ""))
        sign = document.get("sign")
        if sign:
            text = signed_text(raw, key)
            if text is None or not self.signature_holds(text, str(sign)):
                raise ProviderError("支付宝回答的签名不对: 请检查支付宝公钥", certain=False)
        elif code == SUCCESS:
            # A success only Alipay's signature makes believable.
            raise ProviderError("支付宝回答没有签名", certain=False)
        if code != SUCCESS:
            raise AlipayRefused(
                refusal_reason(content),
                str(content.get("sub_code") or code),
                certain=code != UNKNOWN,
            )
        return content

    def signature_holds(self, text: str, sign: str) -> bool:
        """Alipay's signature over ``text``, checked by the SDK's verifier (the one its own
        answer check uses; we hand it the text :func:`signed_text` found)."""
        try:
            return bool(self.sdk()._verify(text, sign))
        except (binascii.Error, ValueError):
            return False

    def biz_order(self, order: OrderRef) -> dict[str, str]:
        if order.currency != "CNY":
            raise ProviderError(f"支付宝只收人民币, 不收 {order.currency}")
        return {
            "out_trade_no": order.order_no,
            "total_amount": yuan(order.amount),
            "subject": order.subject.translate(SUBJECT_FORBIDDEN)[:SUBJECT_CHARS],
            # After this Alipay takes no payment of the order: no payment after it expired.
            "time_expire": beijing(order.expires_at),
        }

    async def create(self, order: OrderRef, urls: Urls) -> Checkout:
        biz = self.biz_order(order)
        if self.mode == "qr":
            answer = await self.precreate(biz, urls)
            return Checkout("qr", str(answer["qr_code"]))
        if self.mode != "page":
            raise ProviderError(f"未知的支付方式 {self.mode}: 应为 page 或 qr")
        biz["product_code"] = "FAST_INSTANT_TRADE_PAY"
        query = self.signed_query(
            "alipay.trade.page.pay", biz, notify_url=urls.notify, return_url=urls.back
        )
        return Checkout("redirect", f"{self.gateway}?{query}")

    async def precreate(self, biz: Mapping[str, str], urls: Urls) -> dict[str, Any]:
        answer = await self.call("alipay.trade.precreate", biz, notify_url=urls.notify)
        if not answer.get("qr_code"):
            raise ProviderError("支付宝预下单没有给出二维码", certain=False)
        return answer

    async def verify(self, notify: Notify) -> Payment:
        fields = self.notify_fields(notify)
        # Kept with its order's page, believed or not.
        named = fields.get("out_trade_no") or None
        sign = fields.pop("sign", "")
        if not sign:
            raise NotifyRefused("通知没有签名 (sign)", order_no=named)
        if fields.get("sign_type", "RSA2") != "RSA2":
            raise NotifyRefused(f"通知的签名方式 {fields['sign_type']} 不是 RSA2", order_no=named)
        try:
            client = self.sdk()
        except ProviderError as exc:
            raise NotifyRefused(exc.reason, order_no=named) from None
        # Alipay signs the non-empty fields but sign and sign_type (the SDK drops sign_type).
        signed = {name: value for name, value in fields.items() if value != ""}
        try:
            holds = bool(client.verify(signed, sign))
        except (binascii.Error, ValueError):
            holds = False
        if not holds:
            raise NotifyRefused("通知的签名不对: 不是支付宝签的, 或被改过", order_no=named)
        return self.payment_of(fields)

    @staticmethod
    def notify_fields(notify: Notify) -> dict[str, str]:
        if notify.method != "POST":
            raise NotifyRefused("支付宝的通知应是 POST 表单")
        try:
            text = notify.body.decode("utf-8")
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise NotifyRefused("通知无法解析: 不是 UTF-8 的表单") from None
        fields = dict(pairs)
        if len(fields) != len(pairs):
            raise NotifyRefused("通知无法解析: 有重复的字段")
        return fields

    def payment_of(self, fields: Mapping[str, str]) -> Payment:
        """The Payment a verified notify reports."""
        missing = [
            name
            for name in ("app_id", "out_trade_no", "trade_status", "total_amount")
            if not fields.get(name)
        ]
        if missing:
            raise NotifyRefused(f"通知缺少字段 {', '.join(missing)}")
        try:
            amount = fen(fields["total_amount"])
        except ValueError:
            raise NotifyRefused(f"通知的金额 {fields['total_amount']!r} 无法读取") from None
        state = trade_state(fields["trade_status"], refunded=bool(fields.get("gmt_refund")))
        if state is None:
            raise NotifyRefused(f"未知的交易状态 {fields['trade_status']}")
        return Payment(
            order_no=fields["out_trade_no"],
            merchant=fields["app_id"],
            amount=amount,
            currency="CNY",
            state=state,
            trade_no=fields.get("trade_no") or None,
            paid_at=paid_time(fields.get("gmt_payment")),
        )

    def answer(self, believed: bool) -> Answer:
        return Answer(200, b"success" if believed else b"fail")

    async def query(self, order: OrderRef) -> Payment | None:
        try:
            answer = await self.call("alipay.trade.query", {"out_trade_no": order.order_no})
        except AlipayRefused as exc:
            if exc.sub_code == NOT_EXIST:
                return None
            raise
        try:
            amount = fen(str(answer.get("total_amount", "")))
        except ValueError:
            raise ProviderError("支付宝查询的金额无法读取", certain=False) from None
        # A closed trade that was paid (send_pay_date) was refunded in full.
        state = trade_state(
            str(answer.get("trade_status", "")), refunded=bool(answer.get("send_pay_date"))
        )
        if state is None:
            raise ProviderError(f"支付宝查询答了未知的交易状态 {answer.get('trade_status')}")
        return Payment(
            order_no=str(answer.get("out_trade_no") or order.order_no),
            merchant=self.merchant,
            amount=amount,
            currency="CNY",
            state=state,
            trade_no=answer.get("trade_no") or None,
            paid_at=paid_time(answer.get("send_pay_date")),
        )

    async def refund(self, order: OrderRef, amount: int, refund_no: str, reason: str) -> Refund:
        answer = await self.call(
            "alipay.trade.refund",
            {
                "out_trade_no": order.order_no,
                "refund_amount": yuan(amount),
                # One refund however often it is asked: Alipay answers a repeat of a done
                # refund with its result (fund_change N) and refunds nothing more.
                "out_request_no": refund_no,
                "refund_reason": reason,
            },
        )
        trade_no = answer.get("trade_no") or None
        if answer.get("fund_change") == "Y":
            return Refund(refund_no, trade_no, "done")
        # N is no failure: a repeat of a done refund, or one still under way. Alipay's
        # documentation says to ask the refund query which.
        said = await self.call(
            "alipay.trade.fastpay.refund.query",
            {"out_trade_no": order.order_no, "out_request_no": refund_no},
        )
        done = said.get("refund_status") == REFUND_SUCCESS
        return Refund(refund_no, trade_no, "done" if done else "pending")

    async def close(self, order: OrderRef) -> None:
        try:
            await self.call("alipay.trade.close", {"out_trade_no": order.order_no})
        except AlipayRefused as exc:
            # Nobody opened the cashier or scanned the code: there is no trade to close,
            # and time_expire keeps one from being paid later.
            if exc.sub_code != NOT_EXIST:
                raise

    async def daily(self, day: date, tz: str) -> list[Payment] | None:
        try:
            answer = await self.call(
                "alipay.data.dataservice.bill.downloadurl.query",
                {"bill_type": "trade", "bill_date": day.isoformat()},
            )
        except AlipayRefused as exc:
            # Alipay makes a day's bill the next morning (T+1): before, it cannot say.
            if exc.sub_code == BILL_NOT_EXIST:
                return None
            raise
        url = str(answer.get("bill_download_url") or "")
        if not url:
            raise ProviderError("支付宝没有给出账单下载地址", certain=False)
        try:
            got = await self.http.get(url)
        except httpx.HTTPError as exc:
            reason = f"下载支付宝账单失败 ({type(exc).__name__})"
            raise ProviderError(reason, certain=False) from None
        if got.status_code != 200:
            raise ProviderError(f"下载支付宝账单失败: HTTP {got.status_code}", certain=False)
        return bill_payments(got.content, self.merchant)


def trade_state(status: str, *, refunded: bool) -> PaymentState | None:
    if status in PAID:
        return "paid"
    if status == "WAIT_BUYER_PAY":
        return "pending"
    if status == "TRADE_CLOSED":
        return "refunded" if refunded else "closed"
    return None


def paid_time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        return from_beijing(str(text))
    except ValueError:
        return None


def bill_payments(archive: bytes, merchant: str) -> list[Payment]:
    """The payments of a trade bill: a zip holding the day's detail CSV (GBK, ``#`` lines
    around a header and one row per trade or refund, each value possibly padded with tabs).
    Refund rows are not payments: the report counts what was paid."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as bundle:
            names = [n for n in bundle.namelist() if n.endswith(BILL_DETAIL)]
            if len(names) != 1:
                raise ProviderError("支付宝账单里没有业务明细", certain=False)
            text = bundle.read(names[0]).decode("gb18030")
    except zipfile.BadZipFile:
        raise ProviderError("支付宝账单不是 zip 文件", certain=False) from None
    except UnicodeDecodeError:
        raise ProviderError("支付宝账单不是 GBK 编码", certain=False) from None
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    payments: list[Payment] = []
    for row in csv.DictReader(lines):
        cells = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if cells.get("业务类型") != BILL_KIND_TRADE:
            continue
        try:
            amount = fen(cells["订单金额（元）"])
        except (KeyError, ValueError):
            raise ProviderError("支付宝账单的订单金额无法读取", certain=False) from None
        payments.append(
            Payment(
                order_no=cells.get("商户订单号", ""),
                merchant=merchant,
                amount=amount,
                currency="CNY",
                state="paid",
                trade_no=cells.get("支付宝交易号") or None,
                paid_at=paid_time(cells.get("完成时间")),
            )
        )
    return payments
