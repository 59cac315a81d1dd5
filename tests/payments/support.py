"""What the payment scenarios share: a method of the platform served by a provider's
double, tiers, orders, and reading what became of them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.payments.harness import DoubleServer, served
from tests.payments.providers import ProviderCase
from tests.support import Platform, User, ok, wait_for

CHECKOUT_PENDING = "pending"


class PayRig:
    """A provider's double on loopback and a method of the platform that pays through it."""

    def __init__(self, platform: Platform, server: DoubleServer, case: ProviderCase) -> None:
        self.platform = platform
        self.server = server
        self.case = case
        self.method = f"{case.kind}_{secrets.token_hex(3)}"
        answer = platform.admin_client.put(
            f"/admin/payments/methods/{self.method}",
            json={
                "kind": case.kind,
                "label": f"测试 {case.kind}",
                "enabled": True,
                "config": server.merchant_config(),
            },
        )
        ok(answer)

    @property
    def double(self) -> Any:
        return self.server.double

    def tier(self, amount: int, points: int, bonus: int = 0) -> int:
        made = self.platform.admin_client.post(
            "/admin/payments/tiers",
            json={"amount": amount, "points": points, "bonus": bonus, "label": f"{amount}"},
        )
        return int(ok(made)["id"])

    def order(self, user: User, amount: int = 1000, points: int = 100, bonus: int = 0) -> str:
        """A new order of a tier of its own, opened at the provider as the payer's browser
        opens it (a redirect's page visited): its number."""
        tier = self.tier(amount, points, bonus)
        made = ok(
            user.client.post("/user/pay/orders", json={"tierId": tier, "method": self.method})
        )
        assert made["status"] == "pending" and made["checkout"], made
        if made["checkout"]["kind"] == "redirect":
            httpx.get(made["checkout"]["url"], follow_redirects=False, timeout=10)
        assert made["orderNo"] in self.double.orders, "the provider does not know the order"
        return str(made["orderNo"])

    def paid(self, user: User, order_no: str, timeout: float = 20) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            found: dict[str, Any] = ok(user.client.get(f"/user/pay/orders/{order_no}"))
            return found if found["status"] == "paid" else None

        return dict(wait_for(f"order {order_no} paid", done, timeout))

    def detail(self, order_no: str) -> dict[str, Any]:
        return dict(ok(self.platform.admin_client.get(f"/admin/payments/orders/{order_no}")))

    def verdicts(self, order_no: str) -> list[str]:
        return sorted(n["verdict"] for n in self.detail(order_no)["notifies"])

    def notifies(self, order_no: str | None) -> list[dict[str, Any]]:
        """The notifies kept of this method (for ``order_no``, or naming none), newest first."""
        params = {"method": self.method, "size": 100}
        if order_no:
            params["orderNo"] = order_no
        found = ok(self.platform.admin_client.get("/admin/payments/notifies", params=params))
        return [n for n in found["records"] if order_no or n["orderNo"] is None]

    def deliver(self, order_no: str, spoil: Any = None) -> httpx.Response:
        """The provider's notify of ``order_no`` (spoiled if asked), sent once, now."""
        notify = self.server.run(lambda: self.double.notify_for(order_no, spoil=spoil))
        return httpx.request(
            notify.method, notify.url, headers=dict(notify.headers), content=notify.body, timeout=30
        )

    def accepted(self, answer: httpx.Response) -> bool:
        return bool(self.double.accepted(answer.status_code, answer.content))


@contextmanager
def rig(platform: Platform, case: ProviderCase) -> Iterator[PayRig]:
    with served(case.make()) as server:
        yield PayRig(platform, server, case)
