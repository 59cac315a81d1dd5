"""Per provider, over real HTTP against its double: a paid order credits once, however
often and however spoiled its notifies come."""

from __future__ import annotations

import dataclasses
import threading
import time

import httpx

from shengtu.payments.sandbox.common import SPOILS, Spoil
from tests.payments.support import PayRig
from tests.support import ok, wait_for


def test_a_paid_order_credits_once(pay: PayRig) -> None:
    user = pay.platform.new_user()
    order_no = pay.order(user, amount=1200, points=120, bonus=30)
    pay.server.pay(order_no)
    paid = pay.paid(user, order_no)
    assert paid["points"] == 120 and paid["bonus"] == 30 and paid["checkout"] is None
    assert user.balance() == 150
    # The double's first delivery was taken: answered as the protocol expects.
    wait_for("the notify answered", lambda: pay.double.deliveries)
    first = pay.double.deliveries[0]
    assert first.order_no == order_no and first.accepted
    # The same notify again (the provider retrying, or an old one replayed): answered as
    # received, so the provider stops, and credits nothing more.
    for _ in range(3):
        assert pay.accepted(pay.deliver(order_no))
    assert user.balance() == 150
    assert pay.verdicts(order_no) == ["credited", "duplicate", "duplicate", "duplicate"]
    # Asking the provider again changes nothing either.
    ok(pay.platform.admin_client.post(f"/admin/payments/orders/{order_no}/check"))
    assert user.balance() == 150
    records = ok(user.client.get("/user/points/consumption/records"))["records"]
    assert [(r["kind"], r["delta"], r["taskNo"]) for r in records] == [("topup", 150, order_no)]
    detail = pay.detail(order_no)
    assert detail["paidVia"] == "notify" and detail["tradeNo"]


def test_a_spoiled_notify_credits_nothing(pay: PayRig) -> None:
    """Each way a notify can be spoiled (SPOILS), one order each, on one provider's rig."""
    for spoil in SPOILS:
        _spoiled(pay, spoil)


def _spoiled(pay: PayRig, spoil: Spoil) -> None:
    user = pay.platform.new_user()
    order_no = pay.order(user, amount=800, points=80)
    if spoil == "stale":
        # An old notify replayed: the order was paid and credited long before.
        pay.server.pay(order_no)
        pay.paid(user, order_no)
    answer = pay.deliver(order_no, spoil)
    found = ok(user.client.get(f"/user/pay/orders/{order_no}"))
    if spoil == "stale":
        assert pay.accepted(answer) == (pay.case.stale_verdict == "duplicate"), spoil
        assert user.balance() == 80
        assert pay.verdicts(order_no).count(pay.case.stale_verdict) == 1
        return
    # Not believed: answered so (the provider may try again), nothing credited.
    assert not pay.accepted(answer), (spoil, answer.text)
    assert found["status"] == "pending", spoil
    assert user.balance() == 0, spoil
    # Kept for the operator, with what was wrong (a malformed one names no order).
    kept = pay.notifies(None if spoil == "malformed" else order_no)[0]
    expected = "refused" if spoil in ("signature", "malformed") else "mismatch"
    assert kept["verdict"] == expected, (spoil, kept)
    assert kept["reason"], kept
    # The money the provider holds for the order is none: its query says so too.
    ok(pay.platform.admin_client.post(f"/admin/payments/orders/{order_no}/check"))
    assert user.balance() == 0, spoil


def test_a_notify_of_an_unknown_order_credits_nothing(pay: PayRig) -> None:
    user = pay.platform.new_user()
    order_no = pay.order(user, amount=500, points=50)
    stranger = "P" + order_no[1:-4] + "FFFF"
    pay.server.run(
        lambda: pay.double.orders.__setitem__(
            stranger,
            dataclasses.replace(pay.double.orders[order_no], order_no=stranger, state="paid"),
        )
    )
    answer = pay.deliver(stranger)
    assert not pay.accepted(answer)
    assert user.balance() == 0
    assert [n["verdict"] for n in pay.notifies(stranger)] == ["unknown_order"]
    assert ok(user.client.get(f"/user/pay/orders/{order_no}"))["status"] == "pending"


def test_fifty_concurrent_copies_of_one_notify_credit_once(pay: PayRig) -> None:
    user = pay.platform.new_user()
    order_no = pay.order(user, amount=1000, points=100)
    pay.server.pay(order_no, notify=False)
    notify = pay.server.run(lambda: pay.double.notify_for(order_no))
    start = threading.Barrier(50)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        start.wait()
        answer = httpx.request(
            notify.method, notify.url, headers=dict(notify.headers), content=notify.body, timeout=60
        )
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=send) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 50 and all(pay.accepted(a) for a in answers)
    assert user.balance() == 100
    verdicts = pay.verdicts(order_no)
    assert verdicts.count("credited") == 1 and verdicts.count("duplicate") == 49, verdicts


def test_a_lost_notify_is_credited_by_the_query_job(pay: PayRig) -> None:
    user = pay.platform.new_user()
    order_no = pay.order(user, amount=600, points=60, bonus=6)
    started = time.monotonic()
    pay.server.pay(order_no, notify=False)
    pay.paid(user, order_no, timeout=30)
    assert user.balance() == 66
    detail = pay.detail(order_no)
    assert detail["paidVia"] == "query" and detail["notifies"] == []
    assert time.monotonic() - started < 30
