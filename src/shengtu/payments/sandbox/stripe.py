"""The Stripe double, under ``/stripe``: the part of Stripe's API a Checkout integration
speaks, a hosted checkout page to pay on, and webhook events signed as Stripe signs them.

The API: ``GET /v1/account``; ``POST``/``GET /v1/checkout/sessions`` (create; list with
``created[gt|gte|lt|lte]``, ``status``, ``payment_intent``, ``limit``, ``starting_after``,
``ending_before``, newest first); ``GET /v1/checkout/sessions/{id}``; ``POST
/v1/checkout/sessions/{id}/expire``; ``POST /v1/refunds``. Parameters form-encoded with
brackets (``line_items[0][price_data][currency]``) as Stripe takes them; an unknown one is
refused, as Stripe refuses it. The secret key as ``Authorization: Bearer`` (or HTTP Basic's
user); a wrong or missing one answers 401 with the key masked but for its last four. Every
``POST`` honours ``Idempotency-Key``: the same key and parameters replay the first answer
(``Idempotent-Replayed: true``), the same key with other parameters is an
``idempotency_error``. Errors in Stripe's shape: ``{"error": {"type", "message", "param",
"code"}}``.

The hosted page (``/c/pay/{id}``, the session's ``url``) has a pay button, a "bank debit"
button (the session completes ``unpaid``, and :meth:`StripeDouble.settle` ends it later, as
an async payment method does) and a cancel link; paying redirects to ``success_url``.

Events go to :attr:`StripeDouble.webhook_url` (the endpoint the operator registered in
Stripe's dashboard; nothing is sent while it is empty), signed with the webhook secret:
``Stripe-Signature: t={unix},v1={hex HMAC-SHA256 of "{t}.{body}"}``, sent again on the
retry schedule until answered 2xx. A session past its ``expires_at`` reads as expired (with
no event: Stripe's comes within the hour; one expired through the API does send it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from shengtu.payments.sandbox.common import DoubleOrder, PaymentDouble, PreparedNotify, Spoil

API_VERSION = "2025-08-27.basil"
# How far from its creation a session may expire, as Stripe allows.
SHORTEST_SECONDS = 30 * 60
LONGEST_SECONDS = 24 * 3600
# Older than Stripe's 300 s tolerance, for the "stale" spoil.
STALE_SECONDS = 3600
# Currencies whose minor unit is the unit (Stripe's zero-decimal list, the common ones).
ZERO_DECIMAL = frozenset({"jpy", "krw", "vnd", "clp", "isk", "ugx", "xaf", "xof"})
SESSION_PARAMS = frozenset(
    {
        "mode",
        "line_items",
        "client_reference_id",
        "metadata",
        "success_url",
        "cancel_url",
        "expires_at",
        "payment_method_types",
        "customer_email",
        "locale",
        "expand",
    }
)
LIST_PARAMS = frozenset(
    {"created", "status", "payment_intent", "limit", "starting_after", "ending_before", "expand"}
)
REFUND_PARAMS = frozenset({"payment_intent", "charge", "amount", "metadata", "reason", "expand"})
REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
_ALPHANUMERIC = string.ascii_letters + string.digits
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_MODE_PREFIX = re.compile(r"^[a-z]{2}_(?:test|live)_")


def _new_event(kind: str, data_object: dict[str, Any], created: int) -> dict[str, Any]:
    """An event as Stripe sends it: ``data.object`` is what it is about."""
    return {
        "id": _id("evt_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def _id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def sign(body: bytes, secret: str, at: int) -> str:
    """The ``Stripe-Signature`` header of ``body`` sent at ``at`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def masked(key: str) -> str:
    """A key as Stripe shows it in an error: its mode prefix and its last four."""
    prefix = m.group(0) if (m := _MODE_PREFIX.match(key)) else ""
    rest = key[len(prefix) :]
    if len(rest) <= 4:
        return prefix + "*" * len(rest)
    return prefix + "*" * (len(rest) - 4) + rest[-4:]


class StripeRefusal(Exception):
    """An answer in Stripe's error shape."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error: dict[str, str] = {"type": kind, "message": message}
        if param is not None:
            self.error["param"] = param
        if code is not None:
            self.error["code"] = code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error}, status_code=self.status, headers=_request_id())


def _request_id() -> dict[str, str]:
    return {"Request-Id": _id("req_", 14)}


def _missing(param: str) -> StripeRefusal:
    return StripeRefusal(f"Missing required param: {param}.", param=param)


def _nested(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Form pairs as Stripe reads them: ``a[b][0][c]=v`` is ``{"a": {"b": {"0": {"c": v}}}}``
    (an index is a key; ``a[]`` appends the next one)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        found = _KEY.match(key)
        if found is None:
            raise StripeRefusal(f"Invalid parameter name: {key}", param=key)
        path = [found.group(1), *_SEGMENT.findall(found.group(2))]
        node = root
        for depth, segment in enumerate(path):
            if segment == "":
                segment = str(len(node))
            if depth == len(path) - 1:
                if isinstance(node.get(segment), dict):
                    raise StripeRefusal(f"Invalid hash: {key}", param=key)
                node[segment] = value
                break
            child = node.setdefault(segment, {})
            if not isinstance(child, dict):
                raise StripeRefusal(f"Invalid hash: {key}", param=key)
            node = child
    return root


def _unknown(params: Mapping[str, Any], known: frozenset[str]) -> None:
    for name in params:
        if name not in known:
            raise StripeRefusal(f"Received unknown parameter: {name}", param=name)


def _integer(value: Any, param: str, *, least: int = 0) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d{1,15}", value):
        raise StripeRefusal(f"Invalid integer: {value}", param=param)
    number = int(value)
    if number < least:
        raise StripeRefusal(f"This value must be greater than or equal to {least}.", param=param)
    return number


def _string(params: Mapping[str, Any], name: str, param: str, *, limit: int = 5000) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise _missing(param)
    if not isinstance(value, str):
        raise StripeRefusal(f"Invalid string: {param}", param=param)
    if len(value) > limit:
        raise StripeRefusal(f"{param} must be at most {limit} characters.", param=param)
    return value


def _indexed(value: Any, param: str) -> list[Any]:
    """A list sent as ``param[0]``, ``param[1]``...: in index order, none skipped."""
    if not isinstance(value, dict) or not all(k.isdigit() for k in value):
        raise StripeRefusal(f"Invalid array: {param}", param=param)
    ordered = sorted(value.items(), key=lambda kv: int(kv[0]))
    if [int(k) for k, _ in ordered] != list(range(len(ordered))):
        raise StripeRefusal(f"Invalid array: {param}", param=param)
    return [v for _, v in ordered]


def _metadata(value: Any) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict) or len(value) > 50:
        raise StripeRefusal("Invalid metadata: at most 50 keys of strings.", param="metadata")
    for key, item in value.items():
        if not isinstance(item, str):
            raise StripeRefusal(f"Invalid string: metadata[{key}]", param=f"metadata[{key}]")
        if len(key) > 40 or len(item) > 500:
            raise StripeRefusal(
                "Metadata keys are at most 40 characters, values at most 500.",
                param=f"metadata[{key}]",
            )
    return dict(value)


def _url(params: Mapping[str, Any], name: str, *, required: bool) -> str:
    value = params.get(name)
    if not value:
        if required:
            raise _missing(name)
        return ""
    if not isinstance(value, str) or not re.match(r"^https?://\S+$", value):
        raise StripeRefusal("Not a valid URL", param=name)
    return value


def _money(amount: int, currency: str) -> str:
    if currency in ZERO_DECIMAL:
        return f"{amount} {currency.upper()}"
    return f"{amount / 100:.2f} {currency.upper()}"


@dataclass
class CheckoutSession:
    """A Checkout Session as the double holds it (:meth:`StripeDouble.session_object` is
    how the API shows it)."""

    id: str
    client_reference_id: str | None
    amount: int  # minor units
    currency: str  # lower case, as Stripe answers
    name: str
    created: int
    expires_at: int
    success_url: str
    cancel_url: str
    page_url: str
    metadata: dict[str, str] = field(default_factory=dict)
    status: Literal["open", "complete", "expired"] = "open"
    payment_status: Literal["unpaid", "paid"] = "unpaid"
    payment_intent: str | None = None
    charge: str | None = None
    # Paid by a method that settles later (a bank debit): completed unpaid first.
    settles_later: bool = False
    failed: bool = False
    refunded: int = 0

    @property
    def order_key(self) -> str:
        """Its key in :attr:`StripeDouble.orders`: our order number, else its own id."""
        return self.client_reference_id or self.id


# An API call: the request and its parameters, to the object it answers.
Handler = Callable[[Request, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class _Reply:
    fingerprint: str
    status: int
    body: dict[str, Any]


class StripeDouble(PaymentDouble):
    kind = "stripe"
    prefix = "/stripe"

    def __init__(self, *, retry_seconds: Sequence[float] = (0.5, 1, 2, 4, 8, 15)) -> None:
        super().__init__(retry_seconds=retry_seconds)
        self.account = _id("acct_", 16)
        self.secret_key = _id("sk_test_", 40)
        self.webhook_secret = _id("whsec_", 32)
        # The endpoint registered in the dashboard, where events go ("" : none registered).
        self.webhook_url = ""
        self.sessions: dict[str, CheckoutSession] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        # Every event made, by id: an event sent again is the same event.
        self.events: dict[str, dict[str, Any]] = {}
        self._event_of: dict[tuple[str, str], str] = {}
        self._replies: dict[str, _Reply] = {}

    # The API.

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/account", self._api(get=self.get_account), methods=["GET"]),
            Route(
                "/v1/checkout/sessions",
                self._api(post=self.create_session, get=self.list_sessions),
                methods=["GET", "POST"],
            ),
            Route(
                "/v1/checkout/sessions/{session_id}",
                self._api(get=self.get_session),
                methods=["GET"],
            ),
            Route(
                "/v1/checkout/sessions/{session_id}/expire",
                self._api(post=self.expire_session),
                methods=["POST"],
            ),
            Route("/v1/refunds", self._api(post=self.create_refund), methods=["POST"]),
            Route(
                "/c/pay/{session_id}",
                self.checkout_page,
                methods=["GET", "POST"],
                name="stripe_checkout_page",
            ),
        ]

    def _api(
        self, *, get: Handler | None = None, post: Handler | None = None
    ) -> Callable[[Request], Any]:
        """An endpoint of the API: the key checked, the parameters read, a POST's
        Idempotency-Key honoured, a refusal answered in Stripe's shape."""

        async def endpoint(request: Request) -> Response:
            try:
                self._authenticate(request)
                if request.method == "GET":
                    assert get is not None
                    params = _nested(parse_qsl(request.url.query, keep_blank_values=True))
                    return JSONResponse(get(request, params), headers=_request_id())
                assert post is not None
                body = (await request.body()).decode("utf-8", "replace")
                params = _nested(parse_qsl(body, keep_blank_values=True))
                return self._idempotent(request, params, post)
            except StripeRefusal as refusal:
                return refusal.response()

        return endpoint

    def _authenticate(self, request: Request) -> None:
        given = request.headers.get("authorization", "")
        scheme, _, credentials = given.partition(" ")
        key = ""
        if scheme.lower() == "bearer":
            key = credentials.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(credentials).decode().partition(":")[0]
            except ValueError:
                key = ""
        if not key:
            raise StripeRefusal(
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
                status=401,
            )
        if not hmac.compare_digest(key.encode(), self.secret_key.encode()):
            raise StripeRefusal(f"Invalid API Key provided: {masked(key)}", status=401)

    def _idempotent(self, request: Request, params: dict[str, Any], run: Handler) -> Response:
        key = request.headers.get("idempotency-key")
        fingerprint = request.url.path + "?" + json.dumps(params, sort_keys=True)
        if key and (earlier := self._replies.get(key)) is not None:
            if earlier.fingerprint != fingerprint:
                raise StripeRefusal(
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request.",
                    kind="idempotency_error",
                )
            headers = {**_request_id(), "Idempotent-Replayed": "true", "Idempotency-Key": key}
            return JSONResponse(earlier.body, status_code=earlier.status, headers=headers)
        body = run(request, params)
        if key:
            self._replies[key] = _Reply(fingerprint, 200, body)
        return JSONResponse(body, headers=_request_id())

    def get_account(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.account,
            "object": "account",
            "business_profile": {"name": "Shengtu sandbox"},
            "charges_enabled": True,
            "country": "US",
            "default_currency": "usd",
            "details_submitted": True,
            "payouts_enabled": True,
            "type": "standard",
        }

    def create_session(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        _unknown(params, SESSION_PARAMS)
        mode = _string(params, "mode", "mode")
        if mode != "payment":
            raise StripeRefusal(f"This sandbox only takes mode=payment, not {mode}.", param="mode")
        if "line_items" not in params:
            raise StripeRefusal(
                "You must provide at least one line item in `payment` mode.", param="line_items"
            )
        items = _indexed(params["line_items"], "line_items")
        amount, currency, names = 0, "", []
        for index, item in enumerate(items):
            line_amount, line_currency, name = self._line_item(item, f"line_items[{index}]")
            if currency and line_currency != currency:
                raise StripeRefusal(
                    "All line items must have the same currency.",
                    param=f"line_items[{index}][price_data][currency]",
                )
            amount, currency = amount + line_amount, line_currency
            names.append(name)
        now = int(time.time())
        expires_at = now + LONGEST_SECONDS
        if params.get("expires_at"):
            expires_at = _integer(params["expires_at"], "expires_at")
            if expires_at < now + SHORTEST_SECONDS:
                raise StripeRefusal(
                    "The `expires_at` timestamp must be at least 30 minutes from Checkout "
                    "Session creation.",
                    param="expires_at",
                )
            if expires_at > now + LONGEST_SECONDS:
                raise StripeRefusal(
                    "The `expires_at` timestamp must be less than 24 hours from Checkout "
                    "Session creation.",
                    param="expires_at",
                )
        reference = params.get("client_reference_id") or None
        if reference is not None:
            reference = _string(params, "client_reference_id", "client_reference_id", limit=200)
        session_id = _id("cs_test_", 58)
        session = CheckoutSession(
            id=session_id,
            client_reference_id=reference,
            amount=amount,
            currency=currency,
            name=", ".join(names),
            created=now,
            expires_at=expires_at,
            success_url=_url(params, "success_url", required=True),
            cancel_url=_url(params, "cancel_url", required=False),
            page_url=str(request.url_for("stripe_checkout_page", session_id=session_id)),
            metadata=_metadata(params.get("metadata")),
        )
        self.sessions[session.id] = session
        self.orders[session.order_key] = DoubleOrder(
            order_no=session.order_key,
            trade_no=session.id,
            amount=amount,
            currency=currency.upper(),
            notify_url=self.webhook_url,
            back_url=session.success_url,
        )
        return self.session_object(session)

    @staticmethod
    def _line_item(item: Any, param: str) -> tuple[int, str, str]:
        """(amount, currency, product name) of one line item with inline ``price_data``."""
        if not isinstance(item, dict):
            raise StripeRefusal(f"Invalid hash: {param}", param=param)
        _unknown(item, frozenset({"price_data", "quantity"}))
        price = item.get("price_data")
        if not isinstance(price, dict):
            raise _missing(f"{param}[price_data]")
        currency = _string(price, "currency", f"{param}[price_data][currency]").lower()
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise StripeRefusal(
                f"Invalid currency: {currency}", param=f"{param}[price_data][currency]"
            )
        if "unit_amount" not in price:
            raise _missing(f"{param}[price_data][unit_amount]")
        unit = _integer(price["unit_amount"], f"{param}[price_data][unit_amount]")
        product = price.get("product_data")
        if not isinstance(product, dict):
            raise _missing(f"{param}[price_data][product_data]")
        name = _string(product, "name", f"{param}[price_data][product_data][name]")
        if "quantity" not in item:
            raise _missing(f"{param}[quantity]")
        quantity = _integer(item["quantity"], f"{param}[quantity]", least=1)
        return unit * quantity, currency, name

    def _session(self, session_id: str, param: str = "session") -> CheckoutSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise StripeRefusal(
                f"No such checkout.session: '{session_id}'",
                status=404,
                param=param,
                code="resource_missing",
            )
        if session.status == "open" and time.time() >= session.expires_at:
            self._close(session)
        return session

    def get_session(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        _unknown(params, frozenset({"expand"}))
        return self.session_object(self._session(request.path_params["session_id"]))

    def list_sessions(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        _unknown(params, LIST_PARAMS)
        chosen = [self._session(s) for s in list(self.sessions)]
        created = params.get("created")
        if isinstance(created, str):
            exact = _integer(created, "created")
            chosen = [s for s in chosen if s.created == exact]
        elif isinstance(created, dict):
            chosen = [s for s in chosen if self._within(s.created, created)]
        if params.get("status"):
            if params["status"] not in ("open", "complete", "expired"):
                raise StripeRefusal(f"Invalid status: {params['status']}", param="status")
            chosen = [s for s in chosen if s.status == params["status"]]
        if params.get("payment_intent"):
            chosen = [s for s in chosen if s.payment_intent == params["payment_intent"]]
        limit = _integer(params.get("limit", "10"), "limit", least=1)
        if limit > 100:
            raise StripeRefusal("This value must be less than or equal to 100.", param="limit")
        # Newest first; the dict keeps the order they were made in, for equal seconds.
        order = {s.id: i for i, s in enumerate(self.sessions.values())}
        chosen.sort(key=lambda s: (s.created, order[s.id]), reverse=True)
        if params.get("starting_after"):
            cursor = self._session(params["starting_after"], "starting_after")
            after = chosen[chosen.index(cursor) + 1 :] if cursor in chosen else []
            page, more = after[:limit], len(after) > limit
        elif params.get("ending_before"):
            cursor = self._session(params["ending_before"], "ending_before")
            before = chosen[: chosen.index(cursor)] if cursor in chosen else []
            page, more = before[-limit:], len(before) > limit
        else:
            page, more = chosen[:limit], len(chosen) > limit
        return {
            "object": "list",
            "data": [self.session_object(s) for s in page],
            "has_more": more,
            "url": "/v1/checkout/sessions",
        }

    @staticmethod
    def _within(moment: int, bounds: Mapping[str, Any]) -> bool:
        _unknown(bounds, frozenset({"gt", "gte", "lt", "lte"}))
        tests = {
            "gt": lambda bound: moment > bound,
            "gte": lambda bound: moment >= bound,
            "lt": lambda bound: moment < bound,
            "lte": lambda bound: moment <= bound,
        }
        return all(tests[op](_integer(value, f"created[{op}]")) for op, value in bounds.items())

    def expire_session(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        _unknown(params, frozenset({"expand"}))
        session = self._session(request.path_params["session_id"])
        if session.status != "open":
            raise StripeRefusal(
                'Only Checkout Sessions with a status in ["open"] can be expired; this one '
                f"is {session.status}."
            )
        self._close(session)
        self._emit(session, "checkout.session.expired")
        return self.session_object(session)

    def create_refund(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        _unknown(params, REFUND_PARAMS)
        session = self._refunded_session(params)
        assert session.payment_intent is not None and session.charge is not None
        left = session.amount - session.refunded
        if left == 0:
            raise StripeRefusal(
                f"Charge {session.charge} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = left
        if params.get("amount"):
            amount = _integer(params["amount"], "amount", least=1)
        if amount > left:
            raise StripeRefusal(
                f"Refund amount ({_money(amount, session.currency)}) is greater than "
                f"unrefunded amount on charge ({_money(left, session.currency)})",
                param="amount",
                code="amount_too_large",
            )
        reason = params.get("reason") or None
        if reason is not None and reason not in REFUND_REASONS:
            raise StripeRefusal(f"Invalid reason: must be one of {sorted(REFUND_REASONS)}")
        refund_id = _id("re_")
        refund: dict[str, Any] = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "balance_transaction": _id("txn_"),
            "charge": session.charge,
            "created": int(time.time()),
            "currency": session.currency,
            "metadata": _metadata(params.get("metadata")),
            "payment_intent": session.payment_intent,
            "reason": reason,
            "status": "succeeded",
        }
        self.refunds[refund_id] = refund
        session.refunded += amount
        order = self.orders[session.order_key]
        order.refunded = session.refunded
        if session.refunded == session.amount:
            order.state = "refunded"
        return refund

    def _refunded_session(self, params: Mapping[str, Any]) -> CheckoutSession:
        intent, charge = params.get("payment_intent"), params.get("charge")
        if not intent and not charge:
            raise StripeRefusal("One of `charge` or `payment_intent` is required.")
        for session in self.sessions.values():
            by_intent = bool(intent) and session.payment_intent == intent
            if by_intent or (bool(charge) and session.charge == charge):
                if session.payment_status != "paid":
                    raise StripeRefusal(
                        f"This PaymentIntent ({session.payment_intent}) does not have a "
                        "successful charge to refund.",
                        code="charge_not_refundable",
                    )
                return session
        name, value = ("payment_intent", intent) if intent else ("charge", charge)
        raise StripeRefusal(
            f"No such {name}: '{value}'", status=404, param=name, code="resource_missing"
        )

    def session_object(self, session: CheckoutSession) -> dict[str, Any]:
        """The session as Stripe's API shows it."""
        return {
            "id": session.id,
            "object": "checkout.session",
            "amount_subtotal": session.amount,
            "amount_total": session.amount,
            "cancel_url": session.cancel_url or None,
            "client_reference_id": session.client_reference_id,
            "created": session.created,
            "currency": session.currency,
            "customer": None,
            "customer_details": None,
            "expires_at": session.expires_at,
            "livemode": False,
            "metadata": dict(session.metadata),
            "mode": "payment",
            "payment_intent": session.payment_intent,
            "payment_method_types": ["card"],
            "payment_status": session.payment_status,
            "status": session.status,
            "success_url": session.success_url,
            "url": session.page_url if session.status == "open" else None,
        }

    # The payer.

    async def checkout_page(self, request: Request) -> Response:
        session = self.sessions.get(request.path_params["session_id"])
        if session is None:
            return HTMLResponse(_page("Something went wrong", "<p>页面不存在</p>"), 404)
        self._session(session.id)
        if request.method == "POST" and session.status == "open":
            form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
            if form.get("action") == "later":
                self.pay_later(session.order_key)
            else:
                self.pay(session.order_key)
            back = session.success_url.replace("{CHECKOUT_SESSION_ID}", session.id)
            return RedirectResponse(back, status_code=303)
        return HTMLResponse(_checkout_html(session), 200 if request.method == "GET" else 409)

    def session_for(self, order_no: str) -> CheckoutSession:
        """The order's latest session. An order put in by hand under another's session (a
        test's order of a stranger) gets a session of its own, in the order's state."""
        order = self.orders[order_no]
        session = self.sessions[order.trade_no]
        if session.client_reference_id in (None, order_no):
            return session
        own = replace(
            session,
            id=_id("cs_"),
            client_reference_id=order_no,
            metadata={**session.metadata, "order_no": order_no},
        )
        if order.state == "paid":
            own.status, own.payment_status = "complete", "paid"
        self.sessions[own.id] = own
        order.trade_no = own.id
        return own

    def pay(self, order_no: str, *, notify: bool = True) -> DoubleOrder:
        session = self.session_for(order_no)
        if session.status == "open":
            self._complete(session, paid=True)
            if notify:
                self._emit(session, "checkout.session.completed")
        return self.orders[order_no]

    def pay_later(self, order_no: str, *, notify: bool = True) -> DoubleOrder:
        """The payer pays by a method that settles later: the session completes unpaid;
        :meth:`settle` ends it."""
        session = self.session_for(order_no)
        if session.status == "open":
            session.settles_later = True
            self._complete(session, paid=False)
            if notify:
                self._emit(session, "checkout.session.completed")
        return self.orders[order_no]

    def settle(self, order_no: str, *, succeeded: bool = True, notify: bool = True) -> DoubleOrder:
        """The payment of :meth:`pay_later` succeeds (paid) or fails (closed)."""
        session = self.session_for(order_no)
        order = self.orders[order_no]
        if session.settles_later and session.payment_status == "unpaid" and not session.failed:
            if succeeded:
                session.payment_status = "paid"
                order.state, order.paid_at = "paid", datetime.now(UTC)
            else:
                session.failed = True
                order.state = "closed"
            if notify:
                kind = "succeeded" if succeeded else "failed"
                self._emit(session, f"checkout.session.async_payment_{kind}")
        return order

    def _complete(self, session: CheckoutSession, *, paid: bool) -> None:
        session.status = "complete"
        session.payment_intent = _id("pi_")
        session.charge = _id("ch_")
        if paid:
            session.payment_status = "paid"
            order = self.orders[session.order_key]
            order.state, order.paid_at = "paid", datetime.now(UTC)

    def _close(self, session: CheckoutSession) -> None:
        session.status = "expired"
        if (order := self.orders.get(session.order_key)) is not None:
            order.state = "closed"

    # The events.

    def _event(self, session: CheckoutSession, kind: str) -> dict[str, Any]:
        """The event ``kind`` of ``session``, made once: sent again, it is the same event."""
        known = self._event_of.get((session.id, kind))
        if known is not None:
            return self.events[known]
        event = _new_event(kind, self.session_object(session), int(time.time()))
        event_id = event["id"]
        self.events[event_id] = event
        self._event_of[(session.id, kind)] = event_id
        return event

    def _emit(self, session: CheckoutSession, kind: str) -> None:
        """Sends the event to the registered endpoint, if one is."""
        event = self._event(session, kind)
        if self.webhook_url:
            self.send(
                self._prepared(event, self.webhook_secret, int(time.time())), session.order_key
            )

    def _prepared(self, event: Mapping[str, Any], secret: str, at: int) -> PreparedNotify:
        body = json.dumps(event, indent=2, ensure_ascii=False).encode()
        return self._signed(body, secret, at)

    def _signed(self, body: bytes, secret: str, at: int) -> PreparedNotify:
        if not self.webhook_url:
            raise LookupError("StripeDouble.webhook_url is empty: no endpoint to send to")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign(body, secret, at),
        }
        return PreparedNotify("POST", self.webhook_url, headers, body)

    def _latest_event(self, session: CheckoutSession) -> dict[str, Any]:
        """The event that tells the session's state now."""
        if session.failed:
            return self._event(session, "checkout.session.async_payment_failed")
        if session.status == "expired":
            return self._event(session, "checkout.session.expired")
        if session.settles_later and session.payment_status == "paid":
            return self._event(session, "checkout.session.async_payment_succeeded")
        return self._event(session, "checkout.session.completed")

    def intent_event(self, order_no: str, *, secret: str = "") -> PreparedNotify:
        """A ``payment_intent.created`` event of ``order_no``'s session, signed (with
        ``secret`` in place of the endpoint's, if given): what an endpoint subscribed to
        every event also gets."""
        session = self.session_for(order_no)
        now = int(time.time())
        intent = {
            "id": session.payment_intent or _id("pi_"),
            "object": "payment_intent",
            "amount": session.amount,
            "currency": session.currency,
            "status": "requires_payment_method",
            "metadata": {},
        }
        event = _new_event("payment_intent.created", intent, now)
        return self._prepared(event, secret or self.webhook_secret, now)

    def notify_for(self, order_no: str, *, spoil: Spoil | None = None) -> PreparedNotify:
        session = self.session_for(order_no)
        now = int(time.time())
        if spoil is None:
            return self._prepared(self._latest_event(session), self.webhook_secret, now)
        # A spoiled one reports the session paid, whether it is or not.
        shown = self.session_object(session)
        shown.update(status="complete", payment_status="paid", url=None)
        shown["payment_intent"] = session.payment_intent or _id("pi_")
        event = _new_event("checkout.session.completed", shown, now)
        secret, at = self.webhook_secret, now
        if spoil == "signature":
            secret = _id("whsec_", 32)
        elif spoil == "amount":
            shown["amount_total"] = shown["amount_subtotal"] = session.amount + 1
        elif spoil == "merchant":
            # Another account's event, as a Connect endpoint receives it.
            event["account"] = _id("acct_", 16)
        elif spoil == "stale":
            at = now - STALE_SECONDS
            event["created"] = at
        elif spoil == "malformed":
            body = json.dumps(event).encode()
            return self._signed(body[: len(body) // 2], secret, at)
        return self._prepared(event, secret, at)

    def accepted(self, status: int, body: bytes) -> bool:
        return 200 <= status < 300

    def merchant_config(self, gateway: str) -> dict[str, str]:
        return {
            "gateway": gateway,
            "account": self.account,
            "secret_key": self.secret_key,
            "webhook_secret": self.webhook_secret,
        }


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )


def _checkout_html(session: CheckoutSession) -> str:
    """The hosted page: what is paid for, the buttons, or what became of the session."""
    name, money = html.escape(session.name), html.escape(_money(session.amount, session.currency))
    if session.status == "expired":
        return _page("Checkout", "<p>This Checkout Session is no longer active.</p>")
    if session.status == "complete":
        back = html.escape(session.success_url.replace("{CHECKOUT_SESSION_ID}", session.id))
        return _page(
            "Checkout", f'<p>This payment is complete.</p><p><a href="{back}">返回商户</a></p>'
        )
    cancel = ""
    if session.cancel_url:
        cancel = f'<p><a data-testid="cancel" href="{html.escape(session.cancel_url)}">取消</a></p>'
    return _page(
        f"支付 {session.name}",
        f'<h1 data-testid="product">{name}</h1>'
        f'<p data-testid="amount">{money}</p>'
        '<form method="post">'
        '<button type="submit" name="action" value="pay" data-testid="pay">支付</button> '
        '<button type="submit" name="action" value="later" data-testid="pay-later">'
        "银行转账（稍后到账）</button>"
        f"</form>{cancel}",
    )
