"""The API process SIGKILLed while it takes a notify, on both sides of the commit: the
provider's retries credit the order exactly once (per provider, per database)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.payments.providers import ProviderCase
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
