"""The API process SIGKILLed while it takes a notify, on both sides of the commit: the
provider's retries credit the order exactly once (per provider, per database)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.payments.providers import CASES, ProviderCase
from tests.payments.support import rig
from tests.support import Platform, ok, wait_for, wait_http

BEFORE = "payments.notify.before_commit"
AFTER = "payments.notify.after_commit"


@pytest.mark.timeout(180)
def test_a_notify_cut_by_a_kill_credits_once_after_the_retry(
    own_platform: Callable[..., Platform], case: ProviderCase
) -> None:
    # No query job in the way: only the notify's retries can credit here.
    platform = own_platform(SHENGTU_FAILPOINTS=BEFORE, SHENGTU_PAYMENT_CHECK_BACKOFF="600")
    platform.start()
    try:
        with rig(platform, case) as pay:
            user = platform.new_user()
            order_no = pay.order(user, amount=1500, points=150, bonus=15)
            pay.server.pay(order_no)
            # 1. Dies before the credit commits; restarted with the other failpoint armed,
            # 2. the provider's retry is credited and the process dies before answering;
            # 3. restarted clean, the next retry is answered as received.
            for armed in (AFTER, ""):
                wait_for(
                    "the API process killed",
                    lambda: platform.server.proc.poll() is not None,
                    timeout=30,
                )
                platform.server = platform.spawn(
                    "serve", env={**platform.env, "SHENGTU_FAILPOINTS": armed}
                )
            # (The armed restart dies as soon as a retry reaches it, maybe before it was
            # seen listening: only the clean one is waited for.)
            wait_http(platform.url + "/healthz", platform.server)
            pay.paid(user, order_no, timeout=30)
            wait_for(
                "the retry answered as received",
                lambda: any(d.accepted for d in pay.double.deliveries),
                timeout=30,
            )
            assert user.balance() == 165
            records = ok(user.client.get("/user/points/consumption/records"))["records"]
            assert [(r["kind"], r["delta"]) for r in records] == [("topup", 165)]
            detail = pay.detail(order_no)
            assert detail["paidVia"] == "notify"
            # The credited attempt died before it was kept; the one answered is a repeat.
            assert [n["verdict"] for n in detail["notifies"]] == ["duplicate"]
        platform.audit()
    finally:
        platform.stop()


REFUND_BEFORE = "payments.refund.before_provider"
REFUND_AFTER = "payments.refund.after_provider"


def _serve(platform: Platform, failpoint: str = "") -> None:
    """The API process restarted (with ``failpoint`` armed)."""
    platform.server.stop()
    platform.server = platform.spawn("serve", env={**platform.env, "SHENGTU_FAILPOINTS": failpoint})
    wait_http(platform.url + "/healthz", platform.server)


def _refund_killed(platform: Platform, order_no: str, failpoint: str) -> None:
    """The refund asked of an API process that dies at ``failpoint``; restarted clean."""
    _serve(platform, failpoint)
    with pytest.raises(httpx.HTTPError):
        platform.admin_client.post(
            f"/admin/payments/orders/{order_no}/refund", json={"reason": "用户申请退款"}
        )
    wait_for("the API process killed", lambda: platform.server.proc.poll() is not None)
    platform.server = platform.spawn("serve", env={**platform.env, "SHENGTU_FAILPOINTS": ""})
    wait_http(platform.url + "/healthz", platform.server)


@pytest.mark.timeout(240)
def test_a_refund_cut_by_a_kill_is_settled_once(own_platform: Callable[..., Platform]) -> None:
    """The API process SIGKILLed between a refund's two steps: before the provider was
    asked, and after it refunded but before that was written. Either way the order is
    left refunding with its points taken; asked again under the same number (Alipay) it
    is refunded once, and where the protocol has no refund number (易支付) the operator
    settles it from the provider's records."""
    platform = own_platform()
    platform.start()
    try:
        for kind in ("alipay", "epay"):
            with rig(platform, CASES[kind]) as pay:
                admin = platform.admin_client
                for failpoint, refunded in ((REFUND_BEFORE, 0), (REFUND_AFTER, 500)):
                    user = platform.new_user()
                    order_no = pay.order(user, amount=500, points=50)
                    pay.server.pay(order_no)
                    pay.paid(user, order_no)
                    _refund_killed(platform, order_no, failpoint)
                    left = pay.detail(order_no)
                    assert (left["status"], left["refundedPoints"]) == ("refunding", 50)
                    assert user.balance() == 0
                    assert pay.double.orders[order_no].refunded == refunded
                    path = f"/admin/payments/orders/{order_no}/refund"
                    if kind == "alipay":
                        assert ok(admin.post(path + "/retry"))["status"] == "refunded"
                        assert user.balance() == 0
                    else:
                        done = refunded > 0
                        body = {"done": done, "reason": "核对易支付后台"}
                        settled = ok(admin.post(path + "/settle", json=body))
                        assert settled["status"] == ("refunded" if done else "paid")
                        assert user.balance() == (0 if done else 50)
                    # Once at the provider, though Alipay was asked twice after the
                    # second kill; 易支付 was not asked again.
                    want = 500 if kind == "alipay" else refunded
                    assert pay.double.orders[order_no].refunded == want
        platform.audit()
    finally:
        platform.stop()
