"""易支付 (EPay): the protocol of the many self-hosted aggregators (彩虹易支付 and its
kind) that take Alipay and WeChat Pay for a merchant.

The merchant signs every request and the gateway every notify with one shared key: MD5
over the non-empty fields but ``sign`` and ``sign_type``, sorted by name and joined
``k=v`` with ``&``, the key appended, in lower-case hex. The payer goes to ``submit.php``
(a page jump) or the merchant asks ``mapi.php`` for a pay URL or QR code; the gateway
notifies by GET (some by POST form) and retries until it reads ``success``. ``api.php``
answers what it knows of an order (``act=order``), lists orders (``act=orders``) and
refunds (``act=refund``) where the gateway supports it; those calls carry the key itself,
as the protocol has it, so their URLs are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx

from shengtu.payments.base import (
    Answer,
    Checkout,
    ConfigField,
    Notify,
    NotifyRefused,
    OrderRef,
    Payment,
    PaymentProvider,
    ProviderError,
    Refund,
    Urls,
)
from shengtu.payments.currency import fen, yuan
from shengtu.timefmt import zone

UNSIGNED = ("sign", "sign_type")
NOTIFY_FIELDS = ("pid", "trade_no", "out_trade_no", "money", "trade_status", "sign")
# act=orders gives at most this many a page; a day is read in at most MAX_PAGES pages.
PAGE = 50
MAX_PAGES = 40
# The gateways are PHP set to China's zone: ``addtime`` and ``endtime`` are Beijing time.
GATEWAY_ZONE = zone("Asia/Shanghai")


def sign(fields: Mapping[str, object], key: str) -> str:
    """The MD5 signature of ``fields`` under the merchant ``key``."""
    text = "&".join(
        f"{name}={fields[name]}"
        for name in sorted(fields)
        if name not in UNSIGNED and fields[name] is not None and str(fields[name]) != ""
    )
    return hashlib.md5((text + key).encode("utf-8"), usedforsecurity=False).hexdigest()


def signed(fields: Mapping[str, object], key: str) -> dict[str, str]:
    """``fields`` (the empty ones left out) with their ``sign`` and ``sign_type``."""
    out = {k: str(v) for k, v in fields.items() if v is not None and str(v) != ""}
    out["sign"] = sign(out, key)
    out["sign_type"] = "MD5"
    return out


class EpayProvider(PaymentProvider):
    kind = "epay"
    label = "易支付"
    fields = (
        ConfigField("gateway", "网关地址(如 https://pay.example.com)"),
        ConfigField("pid", "商户 ID(pid)"),
        ConfigField("key", "商户密钥(key)", secret=True),
        ConfigField(
            "mode", "下单方式:submit(跳转 submit.php)或 mapi(mapi.php 接口)", default="submit"
        ),
        ConfigField("type", "支付方式 type(alipay、wxpay、qqpay…)", default="alipay"),
    )
    redact = frozenset({"sign", "key"})
    refund_repeatable = False  # act=refund takes no refund number
    currencies = frozenset({"CNY"})

    @property
    def merchant(self) -> str:
        return self.config["pid"]

    @property
    def _key(self) -> str:
        return self.config["key"]

    def _url(self, path: str) -> str:
        return self.config["gateway"].rstrip("/") + "/" + path

    def _order_fields(self, order: OrderRef, urls: Urls) -> dict[str, object]:
        return {
            "pid": self.merchant,
            "type": self.config.get("type") or "alipay",
            "out_trade_no": order.order_no,
            "notify_url": urls.notify,
            "return_url": urls.back,
            "name": order.subject,
            "money": yuan(order.amount),
        }

    async def create(self, order: OrderRef, urls: Urls) -> Checkout:
        if order.currency != "CNY":
            raise ProviderError(f"易支付只收人民币(CNY),不收 {order.currency}")
        fields = self._order_fields(order, urls)
        if (self.config.get("mode") or "submit") == "submit":
            return Checkout(
                "redirect", self._url("submit.php?" + urlencode(signed(fields, self._key)))
            )
        fields.update(clientip=order.client_ip or "127.0.0.1", device="pc")
        answer = await self._call("POST", "mapi.php", data=signed(fields, self._key))
        if str(answer.get("code")) != "1":
            raise ProviderError(f"易支付拒绝下单:{answer.get('msg') or answer}")
        trade_no = str(answer.get("trade_no") or "") or None
        if answer.get("qrcode"):
            return Checkout("qr", str(answer["qrcode"]), trade_no)
        if answer.get("payurl"):
            return Checkout("redirect", str(answer["payurl"]), trade_no)
        raise ProviderError("易支付下单的回答里没有 payurl 或 qrcode")

    async def _call(
        self, method: str, path: str, *, params: Any = None, data: Any = None
    ) -> dict[str, Any]:
        try:
            response = await self.http.request(method, self._url(path), params=params, data=data)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # Whether the gateway acted is unknown: asked again before anything is retried.
            raise ProviderError(f"易支付网关无法访问:{type(exc).__name__}", certain=False) from exc
        try:
            body = response.json()
        except ValueError:
            raise ProviderError(f"易支付网关的回答不是 JSON(HTTP {response.status_code})") from None
        if not isinstance(body, dict):
            raise ProviderError("易支付网关的回答不是 JSON 对象")
        return body

    def _fields(self, notify: Notify) -> dict[str, str]:
        if notify.method == "GET" or not notify.body:
            return dict(notify.query)
        try:
            text = notify.body.decode("utf-8")
            return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            raise NotifyRefused("通知格式无法解析(不是表单)") from None

    async def verify(self, notify: Notify) -> Payment:
        fields = self._fields(notify)
        named = fields.get("out_trade_no") or None
        missing = [name for name in NOTIFY_FIELDS if not fields.get(name)]
        if missing:
            raise NotifyRefused(f"通知缺少字段:{', '.join(missing)}", order_no=named)
        if fields.get("sign_type", "MD5").upper() != "MD5":
            raise NotifyRefused(f"不支持的签名方式 {fields['sign_type']}", order_no=named)
        if not hmac.compare_digest(sign(fields, self._key), fields["sign"].lower()):
            raise NotifyRefused("签名校验失败", order_no=named)
        try:
            amount = fen(fields["money"])
        except ValueError:
            raise NotifyRefused("通知金额 money 无法解析", order_no=named) from None
        return Payment(
            order_no=fields["out_trade_no"],
            merchant=fields["pid"],
            amount=amount,
            currency="CNY",
            state="paid" if fields["trade_status"] == "TRADE_SUCCESS" else "pending",
            trade_no=fields["trade_no"],
        )

    def answer(self, believed: bool) -> Answer:
        # Anything but "success" and the gateway sends the notify again later.
        return Answer(200, b"success" if believed else b"fail")

    def _payment(self, row: Mapping[str, Any]) -> Payment:
        try:
            amount = fen(str(row.get("money", "")))
        except ValueError:
            raise ProviderError(f"易支付查询的金额无法解析:{row.get('money')!r}") from None
        return Payment(
            order_no=str(row.get("out_trade_no") or ""),
            merchant=str(row.get("pid") or self.merchant),
            amount=amount,
            currency="CNY",
            state="paid" if str(row.get("status")) == "1" else "pending",
            trade_no=str(row.get("trade_no") or "") or None,
            paid_at=_time(row.get("endtime")),
        )

    async def query(self, order: OrderRef) -> Payment | None:
        answer = await self._call(
            "GET",
            "api.php",
            params={
                "act": "order",
                "pid": self.merchant,
                "key": self._key,
                "out_trade_no": order.order_no,
            },
        )
        code = str(answer.get("code"))
        if code == "-1":  # 订单号不存在
            return None
        if code != "1":
            raise ProviderError(f"易支付查询失败:{answer.get('msg') or code}")
        return self._payment(answer)

    async def refund(self, order: OrderRef, amount: int, refund_no: str, reason: str) -> Refund:
        answer = await self._call(
            "POST",
            "api.php?act=refund",
            data={
                "pid": self.merchant,
                "key": self._key,
                "out_trade_no": order.order_no,
                "money": yuan(amount),
            },
        )
        if str(answer.get("code")) != "1":
            raise ProviderError(f"易支付退款失败:{answer.get('msg') or answer.get('code')}")
        return Refund(refund_no=refund_no, provider_ref=None, state="done")

    async def daily(self, day: date, tz: str) -> list[Payment] | None:
        """The paid orders whose ``endtime`` falls on ``day`` in the site's zone ``tz``,
        from ``act=orders`` (newest first, a page at a time, until the pages reach the day
        before); None where the gateway has no such call."""
        found: list[Payment] = []
        for page in range(MAX_PAGES):
            answer = await self._call(
                "GET",
                "api.php",
                params={
                    "act": "orders",
                    "pid": self.merchant,
                    "key": self._key,
                    "limit": PAGE,
                    "offset": page * PAGE,
                },
            )
            if str(answer.get("code")) != "1":
                return None
            rows = answer.get("data") or []
            if not isinstance(rows, list):
                return None
            older = False
            for row in rows:
                if not isinstance(row, dict):
                    continue
                made = _time(row.get("addtime"))
                paid = _time(row.get("endtime"))
                if (
                    str(row.get("status")) == "1"
                    and paid is not None
                    and paid.astimezone(zone(tz)).date() == day
                ):
                    found.append(self._payment(row))
                if made is not None and made.astimezone(zone(tz)).date() < day:
                    older = True
            if older or len(rows) < PAGE:
                break
        return found


def _time(value: object) -> datetime | None:
    """EPay's ``"2024-05-01 12:00:00"`` (the gateway's wall clock, Beijing's), or None."""
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=GATEWAY_ZONE)
    except ValueError:
        return None
