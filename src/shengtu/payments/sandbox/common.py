"""What every payment provider's double shares: its orders, the payer who pays, and the
notifies it sends (and sends again, on its protocol's schedule, until answered as the
protocol expects). A double is a real HTTP server on loopback that signs and verifies as
its provider does; tests and ``make run`` talk to it with the same code that talks to the
real provider.

Tests steer a double directly (it runs in the test's process): :meth:`PaymentDouble.pay`
plays the payer, :meth:`PaymentDouble.notify_for` builds a notify as the provider would
send it, or spoiled on purpose (:data:`Spoil`).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Literal

import httpx
from starlette.routing import BaseRoute

# How a notify is spoiled for a test:
# - "signature": signed with a key that is not the provider's (or the signature altered)
# - "amount":    the amount changed, otherwise as the provider would sign it
# - "merchant":  another merchant's notify (another pid / app_id / mchid / account)
# - "stale":     a notify of long ago (a timestamp outside the protocol's tolerance, or an
#                old notify replayed: whichever the protocol can tell)
# - "malformed": a body the protocol's parser cannot read
Spoil = Literal["signature", "amount", "merchant", "stale", "malformed"]
SPOILS: tuple[Spoil, ...] = ("signature", "amount", "merchant", "stale", "malformed")


@dataclass
class DoubleOrder:
    """An order as the provider's double holds it."""

    order_no: str  # the merchant's (Shengtu's) number
    trade_no: str  # the provider's
    amount: int  # minor units
    currency: str
    notify_url: str
    back_url: str = ""
    state: Literal["pending", "paid", "closed", "refunded"] = "pending"
    paid_at: datetime | None = None
    refunded: int = 0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedNotify:
    """A notify, ready to be sent: the provider's double sends it, a test may send it
    again or send a spoiled one."""

    method: Literal["GET", "POST"]
    url: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass
class Delivery:
    """One attempt at a notify and how it was answered."""

    order_no: str
    status: int
    body: bytes
    accepted: bool  # answered as the protocol expects of a notify taken


class PaymentDouble(ABC):
    kind: ClassVar[str]  # the provider's kind (payments.base.PaymentProvider.kind)
    prefix: ClassVar[str]  # where the double's routes are mounted: "/epay"

    def __init__(self, *, retry_seconds: Sequence[float] = (0.5, 1, 2, 4, 8, 15)) -> None:
        self.orders: dict[str, DoubleOrder] = {}
        self.deliveries: list[Delivery] = []
        # The protocol's retry schedule, shortened for tests: after each unaccepted answer
        # (or no answer) the next wait; then the double gives up.
        self.retry_seconds = tuple(retry_seconds)
        self._sending: set[asyncio.Task[None]] = set()

    @abstractmethod
    def routes(self) -> list[BaseRoute]:
        """The provider's API as its documentation describes it, under :attr:`prefix`."""

    @abstractmethod
    def merchant_config(self, gateway: str) -> dict[str, str]:
        """The settings a Shengtu payment method needs to use this double (``gateway``:
        where it is served, prefix included): merchant id, keys, ``gateway``."""

    @abstractmethod
    def notify_for(self, order_no: str, *, spoil: Spoil | None = None) -> PreparedNotify:
        """The notify the provider sends when ``order_no`` is paid (it must be paid, except
        for a spoiled one), or a spoiled one."""

    @abstractmethod
    def accepted(self, status: int, body: bytes) -> bool:
        """Whether an answer to a notify is the protocol's "received, stop sending"."""

    def pay(self, order_no: str, *, notify: bool = True) -> DoubleOrder:
        """The payer pays ``order_no``; the provider then notifies, unless ``notify`` is
        False (a lost notify: only a query will tell)."""
        order = self.orders[order_no]
        if order.state == "pending":
            order.state = "paid"
            order.paid_at = datetime.now(UTC)
        if notify:
            self.send(self.notify_for(order_no), order_no)
        return order

    def send(self, notify: PreparedNotify, order_no: str) -> None:
        """Deliver ``notify`` in the background, again on the retry schedule until it is
        accepted."""
        task = asyncio.get_running_loop().create_task(self._deliver(notify, order_no))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, notify: PreparedNotify, order_no: str) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            for wait in (0.0, *self.retry_seconds):
                await asyncio.sleep(wait)
                try:
                    answer = await http.request(
                        notify.method, notify.url, headers=dict(notify.headers), content=notify.body
                    )
                except httpx.HTTPError:
                    continue
                accepted = self.accepted(answer.status_code, answer.content)
                self.deliveries.append(
                    Delivery(order_no, answer.status_code, answer.content, accepted)
                )
                if accepted:
                    return

    async def aclose(self) -> None:
        for task in list(self._sending):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
