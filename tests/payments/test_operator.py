"""Per provider: the operator's refund, manual check and completion; and the payments
API's refusals, secrets and privacy."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from shengtu.db import utcnow
from shengtu.tasks.worker import PERIODIC_JOBS
from tests.databases import ScratchDatabase
from tests.payments.providers import CASES
from tests.payments.support import PayRig, rig
from tests.support import SANDBOX_MODEL, Platform, Silent, cli, ok, serve_http, wait_for


def rigs(audited: Platform, database: ScratchDatabase, every_provider: bool) -> Iterator[PayRig]:
    """The operator's scenarios: against every provider on SQLite, against 易支付 on MariaDB
    and PostgreSQL (the crediting scenarios, test_crediting and test_kills, run every
    provider on every database); a scenario no provider changes, against 易支付 alone."""
    kinds = sorted(CASES) if every_provider and database.backend == "sqlite" else ["epay"]
    for kind in kinds:
        with rig(audited, CASES[kind]) as made:
            yield made


def test_a_refund_takes_back_the_unspent_points(
    audited: Platform, database: ScratchDatabase
) -> None:
    for pay in rigs(audited, database, every_provider=True):
        user = pay.platform.new_user()
        order_no = pay.order(user, amount=1000, points=100, bonus=20)
        pay.server.pay(order_no)
        pay.paid(user, order_no)
        admin = pay.platform.admin_client
        done = ok(
            admin.post(f"/admin/payments/orders/{order_no}/refund", json={"reason": "用户申请退款"})
        )
        assert (done["status"], done["refundedAmount"], done["refundedPoints"]) == (
            "refunded",
            1000,
            120,
        )
        assert user.balance() == 0
        assert pay.double.orders[order_no].refunded == 1000
        records = ok(user.client.get("/user/points/consumption/records"))["records"]
        assert [(r["kind"], r["delta"]) for r in records] == [
            ("topup_refund", -120),
            ("topup", 120),
        ]
        # Once: a second refund of the order is refused and changes nothing.
        again = admin.post(
            f"/admin/payments/orders/{order_no}/refund", json={"reason": "再退"}
        ).json()
        assert again["code"] == 409 and "已支付" in again["message"]
        assert pay.double.orders[order_no].refunded == 1000
        assert any(
            e["action"] == "payments.order.refund" and e["after"]["reason"] == "用户申请退款"
            for e in pay.platform.audit_entries(f"order:{order_no}")
        )
        # A late notify of a refunded order credits nothing.
        assert pay.accepted(pay.deliver(order_no))
        assert user.balance() == 0


def test_a_refund_is_refused_when_the_points_were_spent(
    audited: Platform, database: ScratchDatabase
) -> None:
    for pay in rigs(audited, database, every_provider=True):
        user = pay.platform.new_user()
        order_no = pay.order(user, amount=400, points=40)
        pay.server.pay(order_no)
        pay.paid(user, order_no)
        task = user.submit(modelName=SANDBOX_MODEL, prompt="花掉充值的积分")
        assert task["code"] == 200, task
        user.wait(task["data"]["taskNo"])
        assert user.balance() == 10
        refused = pay.platform.admin_client.post(
            f"/admin/payments/orders/{order_no}/refund", json={"reason": "用户申请退款"}
        ).json()
        assert refused["code"] == 409, refused
        assert "40 积分" in refused["message"] and "10 积分" in refused["message"]
        # Nothing changed: not here, not at the provider.
        assert ok(user.client.get(f"/user/pay/orders/{order_no}"))["status"] == "paid"
        assert pay.double.orders[order_no].refunded == 0
        assert user.balance() == 10


def test_check_now_and_a_manual_completion(audited: Platform, database: ScratchDatabase) -> None:
    for pay in rigs(audited, database, every_provider=True):
        user = pay.platform.new_user()
        admin = pay.platform.admin_client
        # Paid, its notify lost: "check now" asks the provider at once, before the job would.
        asked = pay.order(user, amount=300, points=30)
        pay.server.pay(asked, notify=False)
        checked = ok(admin.post(f"/admin/payments/orders/{asked}/check"))
        assert checked["status"] == "paid" and user.balance() == 30
        assert pay.detail(asked)["paidVia"] == "query"
        # Not paid at the provider as far as it says: the operator completes it by hand, with
        # a reason in the audit log; credited once.
        manual = pay.order(user, amount=500, points=50, bonus=5)
        done = ok(
            admin.post(
                f"/admin/payments/orders/{manual}/complete", json={"reason": "线下转账已核实"}
            )
        )
        assert done["status"] == "paid" and user.balance() == 85
        assert pay.detail(manual)["paidVia"] == "manual"
        again = admin.post(
            f"/admin/payments/orders/{manual}/complete", json={"reason": "再补"}
        ).json()
        assert again["code"] == 409
        entries = pay.platform.audit_entries(f"order:{manual}")
        assert [e["after"]["reason"] for e in entries] == ["线下转账已核实"]
        # The provider's notify after all: a duplicate, credits nothing.
        pay.server.pay(manual)
        wait_for(
            "the late notify", lambda pay=pay, manual=manual: "duplicate" in pay.verdicts(manual)
        )
        assert user.balance() == 85


def _shows(text: str, secrets: list[str]) -> bool:
    """Whether ``text`` shows any of ``secrets``, or a line of one (a PEM key's lines
    appear in JSON between escaped newlines)."""
    lines = [line for s in secrets for line in s.splitlines() if len(line) >= 16]
    return any(s in text for s in secrets) or any(line in text for line in lines)


def test_the_method_secret_is_sealed_and_never_shown(
    audited: Platform, database: ScratchDatabase
) -> None:
    for pay in rigs(audited, database, every_provider=True):
        admin = pay.platform.admin_client
        listed = admin.get("/admin/payments/methods")
        mine = next(m for m in ok(listed) if m["key"] == pay.method)
        secret_fields = [f["name"] for f in mine["fields"] if f["secret"]]
        config = pay.server.merchant_config()
        secret = [config[name] for name in secret_fields if config.get(name)]
        assert secret and not _shows(listed.text, secret)
        assert all(mine["config"][name].startswith("…") for name in secret_fields)
        # Saved again with the masks as shown: the stored secrets stay and still work.
        body = {"kind": mine["kind"], "label": "改名了", "enabled": True, "config": mine["config"]}
        assert not _shows(
            repr(ok(admin.put(f"/admin/payments/methods/{pay.method}", json=body))), secret
        )
        user = pay.platform.new_user()
        order_no = pay.order(user, amount=100, points=10)
        pay.server.pay(order_no)
        pay.paid(user, order_no)
        # Neither the audit log nor the kept notifies show the secret or a signature.
        audit = admin.get("/admin/audit", params={"target": f"method:{pay.method}", "size": 100})
        assert not _shows(audit.text, secret) and "改名了" in audit.text
        kept = admin.get(f"/admin/payments/orders/{order_no}")
        assert not _shows(kept.text, secret)
        # Every protocol signs its notifies: the signature is kept only as its mask.
        assert "***" in kept.text


def test_bad_orders_are_refused_and_change_nothing(
    audited: Platform, database: ScratchDatabase
) -> None:
    for pay in rigs(audited, database, every_provider=False):
        user = pay.platform.new_user()
        client = user.client
        tier = pay.tier(1000, 100)
        refusals = [
            {"tierId": tier, "amount": 1000, "method": pay.method},
            {"method": pay.method},
            {"tierId": 10**12, "method": pay.method},
            {"tierId": tier, "method": "no_such_method"},
            {"amount": 1, "method": pay.method},
            {"amount": 10**11, "method": pay.method},
            {"tierId": tier, "method": "<img src=x onerror=alert(1)>"},
        ]
        for body in refusals:
            answer = client.post("/user/pay/orders", json=body).json()
            assert answer["code"] == 400, (body, answer)
            assert any("\u4e00" <= ch <= "\u9fff" for ch in answer["message"]), answer
        assert ok(client.get("/user/pay/orders"))["total"] == 0
        admin = pay.platform.admin_client
        bad_kind = admin.put(
            "/admin/payments/methods/x", json={"kind": "nope", "label": "x", "config": {}}
        ).json()
        assert bad_kind["code"] == 400 and "不支持的支付类型" in bad_kind["message"]
        # The key and every answer would cross the network in clear: https, or this machine.
        for gateway in ("http://pay.example.com", "ftp://127.0.0.1", "http://10.0.0.1"):
            config = {**pay.server.merchant_config(), "gateway": gateway}
            clear = admin.put(
                "/admin/payments/methods/clear",
                json={"kind": pay.case.kind, "label": "明文", "config": config},
            ).json()
            assert clear["code"] == 400 and "https://" in clear["message"], (gateway, clear)
        bad_settings = admin.put(
            "/admin/payments/settings",
            json={
                "currency": "CNY",
                "pointsPerUnit": 100,
                "minAmount": 500,
                "maxAmount": 100,
                "orderMinutes": 30,
            },
        ).json()
        assert bad_settings["code"] == 400 and "minAmount" in bad_settings["message"]
        # A disabled method takes no new order.
        mine = next(m for m in ok(admin.get("/admin/payments/methods")) if m["key"] == pay.method)
        body = {
            "kind": mine["kind"],
            "label": mine["label"],
            "enabled": False,
            "config": mine["config"],
        }
        ok(admin.put(f"/admin/payments/methods/{pay.method}", json=body))
        off = client.post("/user/pay/orders", json={"tierId": tier, "method": pay.method}).json()
        assert off["code"] == 400 and "未启用" in off["message"]
        assert pay.method not in [m["key"] for m in ok(client.get("/user/pay/options"))["methods"]]


def test_users_see_only_their_own_orders(audited: Platform, database: ScratchDatabase) -> None:
    for pay in rigs(audited, database, every_provider=False):
        owner = pay.platform.new_user()
        other = pay.platform.new_user()
        order_no = pay.order(owner, amount=200, points=20)
        assert [o["orderNo"] for o in ok(owner.client.get("/user/pay/orders"))["records"]] == [
            order_no
        ]
        assert ok(other.client.get("/user/pay/orders"))["total"] == 0
        for path in (f"/user/pay/orders/{order_no}", f"/user/pay/orders/{order_no}/qr.svg"):
            assert other.client.get(path).json()["code"] == 404
        qr = owner.client.get(f"/user/pay/orders/{order_no}/qr.svg")
        assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
        assert qr.text.lstrip().startswith("<svg")


def test_the_daily_report_and_the_csv(audited: Platform, database: ScratchDatabase) -> None:
    for pay in rigs(audited, database, every_provider=True):
        user = pay.platform.new_user()
        order_no = pay.order(user, amount=700, points=70)
        pay.server.pay(order_no)
        paid = pay.paid(user, order_no)
        # The number carries the time it was made, on the site's clock as createdAt.
        assert order_no[1:15] == "".join(ch for ch in paid["createdAt"] if ch.isdigit())
        day = paid["paidAt"][:10]
        admin = pay.platform.admin_client
        report = ok(admin.get("/admin/payments/report", params={"day": day}))
        mine = next(m for m in report["methods"] if m["method"] == pay.method)
        assert (mine["ordersPaid"], mine["amount"]) == (1, 700)
        if mine["provider"] is not None:
            assert mine["provider"] == {"ordersPaid": 1, "amount": 700}
            assert mine["differences"] == []
        csv = admin.get("/admin/payments/orders.csv", params={"method": pay.method})
        assert csv.status_code == 200
        lines = csv.text.lstrip("\ufeff").splitlines()
        assert lines[0].startswith("orderNo,status,amount") and len(lines) == 2
        assert lines[1].startswith(f"{order_no},paid,700,")
        stats = ok(admin.get("/admin/stats"))
        assert stats["paidRevenue"]["amount"] >= 700 and stats["paidRevenue"]["currency"] == "CNY"


def test_an_expired_order_still_credits_a_late_payment(
    audited: Platform, database: ScratchDatabase
) -> None:
    """At its expiry an order is asked about one last time, then expired (and closed at the
    provider, where the protocol can close it). Money that comes after is still money
    received: paid at the provider just before its time was up, with the notify lost, the
    last question credits it; paid after, where the provider could not be told to close
    it, its notify credits the expired order."""
    for pay in rigs(audited, database, every_provider=True):
        user = pay.platform.new_user()
        raced = pay.order(user, amount=700, points=70)
        pay.server.pay(raced, notify=False)
        _expire_now(pay, raced)
        pay.paid(user, raced)
        assert user.balance() == 70
        order_no = pay.order(user, amount=900, points=90)
        _expire_now(pay, order_no)
        # The query job (or check now) finds it past its time and not paid: expired.
        _wait_status(user, order_no, "expired")
        assert user.balance() == 70
        if pay.case.closes:
            # Closed at the provider: the payer can no longer pay it.
            pay.server.pay(order_no, notify=False)
            assert pay.double.orders[order_no].state != "paid"
            assert ok(user.client.get(f"/user/pay/orders/{order_no}"))["status"] == "expired"
            assert user.balance() == 70
            continue
        pay.server.pay(order_no)
        pay.paid(user, order_no)
        assert user.balance() == 160
        assert pay.verdicts(order_no) == ["credited"]


def _wait_status(user: Any, order_no: str, status: str, timeout: float = 20) -> None:
    """Until the user's order shows ``status`` (a job's doing)."""
    wait_for(
        f"the order {status}",
        lambda: ok(user.client.get(f"/user/pay/orders/{order_no}"))["status"] == status,
        timeout=timeout,
    )


def _expire_now(pay: PayRig, order_no: str) -> None:
    """The order's time is up (its expiry and next question moved to now), as if its
    minutes had passed."""
    import asyncio

    from sqlalchemy import update

    from shengtu.db import Database, utcnow
    from shengtu.models.payments import PaymentOrder

    async def move() -> None:
        db = Database(pay.platform.settings().resolved_database_url, pool_size=1)
        try:
            async with db.write() as session:
                await session.execute(
                    update(PaymentOrder)
                    .where(PaymentOrder.order_no == order_no)
                    .values(expires_at=utcnow(), next_check_at=utcnow())
                )
        finally:
            await db.dispose()

    asyncio.run(move())


def test_a_stripe_event_of_another_kind_is_received_and_moves_nothing(
    audited: Platform, database: ScratchDatabase
) -> None:
    """An endpoint subscribed to every event also gets events we do not act on: signed by
    Stripe, one is answered 2xx (a 4xx has Stripe retry it for days, then disable the
    endpoint) and kept as ignored; with a wrong signature, the same is refused. Neither
    moves an order or a point."""
    with rig(audited, CASES["stripe"]) as pay:
        user = pay.platform.new_user()
        order_no = pay.order(user, amount=700, points=70)

        def send(secret: str = "") -> int:
            notify = pay.server.run(lambda: pay.double.intent_event(order_no, secret=secret))
            return httpx.request(
                notify.method, notify.url, headers=dict(notify.headers), content=notify.body
            ).status_code

        assert send() == 200
        assert send(secret="whsec_" + "0" * 32) == 400
        kept = {n["verdict"]: n["reason"] for n in pay.notifies(None)[:2]}
        assert kept.keys() == {"ignored", "refused"}
        assert "payment_intent.created" in kept["ignored"]
        assert ok(user.client.get(f"/user/pay/orders/{order_no}"))["status"] == "pending"
        assert user.balance() == 0
        # Having moved nothing, it goes after the retention.
        pay.platform.execute(
            "UPDATE payment_notify SET received_at = :then WHERE verdict = 'ignored'",
            then=utcnow() - timedelta(days=91),
        )
        cli(pay.platform.env, "sweep")
        assert "ignored" not in [n["verdict"] for n in pay.notifies(None)]


def test_a_custom_amount_buys_points_by_its_currencys_own_unit(
    audited: Platform, database: ScratchDatabase
) -> None:
    """Amounts are minor units, and a unit is not always 100 of them: ¥1,500 (JPY has no
    minor unit) at 2 points a yen is 3,000 points, and every amount shown is in yen."""
    with rig(audited, CASES["stripe"]) as pay:
        admin = pay.platform.admin_client
        before = ok(admin.get("/admin/payments/settings"))
        assert before["minorDigits"] == 2
        keep = {k: before[k] for k in ("currency", "pointsPerUnit", "minAmount", "maxAmount")}
        jpy = {**keep, "currency": "JPY", "pointsPerUnit": 2, "minAmount": 100}
        jpy |= {"maxAmount": 100_000, "orderMinutes": before["orderMinutes"]}
        try:
            assert ok(admin.put("/admin/payments/settings", json=jpy))["minorDigits"] == 0
            user = pay.platform.new_user()
            options = ok(user.client.get("/user/pay/options"))
            assert (options["currency"], options["minorDigits"]) == ("JPY", 0)
            low = user.client.post("/user/pay/orders", json={"amount": 50, "method": pay.method})
            assert "100 至 100000 JPY" in low.json()["message"]
            made = ok(
                user.client.post("/user/pay/orders", json={"amount": 1500, "method": pay.method})
            )
            assert (made["amount"], made["currency"], made["points"]) == (1500, "JPY", 3000)
            httpx.get(made["checkout"]["url"], timeout=10)
            pay.server.pay(made["orderNo"])
            pay.paid(user, made["orderNo"])
            assert user.balance() == 3000
            records = ok(user.client.get("/user/points/consumption/records"))["records"]
            assert [(r["kind"], r["delta"], r.get("note")) for r in records] == [
                ("topup", 3000, "在线充值 1500 JPY")
            ]
        finally:
            ok(admin.put("/admin/payments/settings", json={**before, **keep}))


def test_notifies_that_moved_nothing_are_deleted_after_their_retention(
    audited: Platform, database: ScratchDatabase
) -> None:
    """A flood of forged notifies cannot grow the table for ever: past
    SHENGTU_PAYMENT_NOTIFY_RETENTION_DAYS (90) the refused ones go, by the workers' sweep
    or `shengtu sweep`; the credited one and its duplicate stay with their order."""
    assert "payment_notifies_prune" in [job.name for job in PERIODIC_JOBS]
    for pay in rigs(audited, database, every_provider=False):
        user = pay.platform.new_user()
        order_no = pay.order(user, amount=300, points=30)
        pay.server.pay(order_no, notify=False)
        assert not pay.accepted(pay.deliver(order_no, spoil="signature"))
        assert pay.accepted(pay.deliver(order_no))
        assert pay.accepted(pay.deliver(order_no))
        assert pay.verdicts(order_no) == ["credited", "duplicate", "refused"]
        pay.platform.execute(
            "UPDATE payment_notify SET received_at = :then WHERE order_no = :order_no",
            then=utcnow() - timedelta(days=91),
            order_no=order_no,
        )
        swept = cli(pay.platform.env, "sweep").stdout
        assert "过期的未入账支付通知" in swept, swept
        assert pay.verdicts(order_no) == ["credited", "duplicate"]
        assert user.balance() == 30


def test_a_method_speaks_only_for_its_own_orders(
    audited: Platform, database: ScratchDatabase
) -> None:
    """Two methods on one merchant account (or an aggregator that holds another method's
    key): a notify that comes to one about an order made under the other moves nothing,
    however well it is signed."""
    for pay in rigs(audited, database, every_provider=False):
        admin = pay.platform.admin_client
        other = f"{pay.case.kind}_{secrets.token_hex(3)}"
        body = {
            "kind": pay.case.kind,
            "label": "同一商户的另一方式",
            "enabled": True,
            "config": pay.server.merchant_config(),
        }
        ok(admin.put(f"/admin/payments/methods/{other}", json=body))
        try:
            user = pay.platform.new_user()
            order_no = pay.order(user, amount=500, points=50)
            pay.server.pay(order_no, notify=False)
            notify = pay.server.run(
                lambda pay=pay, order_no=order_no: pay.double.notify_for(order_no)
            )
            elsewhere = notify.url.replace(f"/pay/notify/{pay.method}", f"/pay/notify/{other}")
            assert elsewhere != notify.url
            answer = httpx.request(
                notify.method, elsewhere, headers=dict(notify.headers), content=notify.body
            )
            assert not pay.accepted(answer)
            assert user.balance() == 0
            assert pay.verdicts(order_no) == ["mismatch"]
            assert pay.accepted(pay.deliver(order_no))
            pay.paid(user, order_no)
            assert user.balance() == 50
        finally:  # methods are never deleted (their orders name them): switched off
            ok(admin.put(f"/admin/payments/methods/{other}", json={**body, "enabled": False}))


def _set_gateway(pay: PayRig, gateway: str) -> None:
    """The method pointed at ``gateway`` (its other settings as they were)."""
    body = {
        "kind": pay.case.kind,
        "label": f"测试 {pay.case.kind}",
        "enabled": True,
        "config": {**pay.server.merchant_config(), "gateway": gateway},
    }
    ok(pay.platform.admin_client.put(f"/admin/payments/methods/{pay.method}", json=body))


def _refund(pay: PayRig, order_no: str, reason: str = "用户申请退款") -> dict[str, Any]:
    answer = pay.platform.admin_client.post(
        f"/admin/payments/orders/{order_no}/refund", json={"reason": reason}
    )
    return dict(answer.json())


def _refund_entries(user: Any) -> list[tuple[str, int]]:
    records = ok(user.client.get("/user/points/consumption/records"))["records"]
    return [
        (r["kind"], r["delta"]) for r in records if r["kind"] in ("topup_refund", "topup_restore")
    ]


def test_a_refund_the_provider_refuses_gives_everything_back(
    audited: Platform, database: ScratchDatabase
) -> None:
    """The points are taken before the provider is asked (so they cannot be spent while it
    refunds); when it refuses, the order is paid again and the points are back, and a
    later refund is a new attempt with a number of its own."""
    for pay in rigs(audited, database, every_provider=False):
        user = pay.platform.new_user()
        order_no = pay.order(user, amount=600, points=60)
        # Completed by hand: paid here, not at the provider, which refuses to refund it.
        admin = pay.platform.admin_client
        ok(admin.post(f"/admin/payments/orders/{order_no}/complete", json={"reason": "核实"}))
        assert user.balance() == 60
        refused = _refund(pay, order_no)
        assert refused["code"] == 503 and "积分已退回" in refused["message"], refused
        detail = pay.detail(order_no)
        assert (detail["status"], detail["refundedPoints"]) == ("paid", 0)
        assert "拒绝退款" in detail["refundNote"]
        assert user.balance() == 60
        assert _refund_entries(user) == [("topup_restore", 60), ("topup_refund", -60)]
        # Paid at the provider after all: the second attempt refunds.
        pay.server.pay(order_no, notify=False)
        done = ok(admin.post(f"/admin/payments/orders/{order_no}/refund", json={"reason": "再退"}))
        assert (done["status"], done["refundedPoints"]) == ("refunded", 60)
        assert user.balance() == 0
        assert pay.double.orders[order_no].refunded == 600
        assert pay.detail(order_no)["refundTries"] == 2
        assert [e[0] for e in _refund_entries(user)] == [
            "topup_refund",
            "topup_restore",
            "topup_refund",
        ]


def test_a_refund_with_no_answer_stays_refunding_until_settled(
    audited: Platform, database: ScratchDatabase
) -> None:
    """The provider's answer never comes: the money may have gone, so the points stay
    taken and the order says so (refunding, with why). Where the protocol has a refund
    number, the periodic job asks again under it, which refunds once; where it has none
    (易支付), asking again could refund twice, so it is refused and the operator, having
    looked at the provider's records, says what happened."""
    for pay in rigs(audited, database, every_provider=True):
        user = pay.platform.new_user()
        admin = pay.platform.admin_client
        order_no = pay.order(user, amount=800, points=80)
        pay.server.pay(order_no)
        pay.paid(user, order_no)
        gateway = pay.server.merchant_config()["gateway"]
        silent = serve_http(Silent)
        port = silent.server_address[1]
        _set_gateway(pay, urlsplit(gateway)._replace(netloc=f"127.0.0.1:{port}").geturl())
        try:
            unknown = ok(
                admin.post(f"/admin/payments/orders/{order_no}/refund", json={"reason": "退"})
            )
        finally:
            _set_gateway(pay, gateway)
            silent.shutdown()
        assert (unknown["status"], unknown["refundedPoints"]) == ("refunding", 80)
        assert user.balance() == 0
        detail = pay.detail(order_no)
        assert "没有给出结果" in detail["refundNote"]
        assert detail["refundRepeatable"] == (pay.case.kind != "epay")
        again = _refund(pay, order_no)
        assert again["code"] == 409 and "还没有结果" in again["message"]
        retry = admin.post(f"/admin/payments/orders/{order_no}/refund/retry")
        if pay.case.kind == "epay":
            assert retry.json()["code"] == 409 and "重复退款" in retry.json()["message"]
            # Not refunded, says the gateway's own back office: the points come back.
            settled = ok(
                admin.post(
                    f"/admin/payments/orders/{order_no}/refund/settle",
                    json={"done": False, "reason": "后台无退款记录"},
                )
            )
            assert (settled["status"], user.balance()) == ("paid", 80)
            assert pay.double.orders[order_no].refunded == 0
            actions = [e["action"] for e in pay.platform.audit_entries(f"order:{order_no}")]
            assert "payments.order.refund_undone" in actions
        else:
            # Asked again by hand or by the job (its first wait here is 5 s): once.
            assert retry.json()["code"] in (200, 409), retry.json()
            _wait_status(user, order_no, "refunded", timeout=30)
            assert pay.double.orders[order_no].refunded == 800
            assert user.balance() == 0
        # Nothing left to settle.
        late = admin.post(
            f"/admin/payments/orders/{order_no}/refund/settle",
            json={"done": True, "reason": "重复确认"},
        ).json()
        assert late["code"] == 409, late


def test_a_refund_the_provider_is_still_processing_is_asked_about_until_done(
    audited: Platform, database: ScratchDatabase
) -> None:
    """WeChat Pay answers most refunds PROCESSING: the order stays refunding (the points
    taken), and the periodic job asks again under the same refund number until the
    provider says SUCCESS; nobody has to press anything."""
    with rig(audited, CASES["wechat"]) as pay:
        user = pay.platform.new_user()
        order_no = pay.order(user, amount=700, points=70)
        pay.server.pay(order_no)
        pay.paid(user, order_no)
        pay.double.refund_status = "PROCESSING"
        asked = ok(
            pay.platform.admin_client.post(
                f"/admin/payments/orders/{order_no}/refund", json={"reason": "用户申请退款"}
            )
        )
        assert (asked["status"], user.balance()) == ("refunding", 0)
        assert "正在处理" in pay.detail(order_no)["refundNote"]
        # WeChat Pay finishes it.
        (refund,) = [r for r in pay.double.refunds.values() if r["out_trade_no"] == order_no]
        refund["status"] = "SUCCESS"
        _wait_status(user, order_no, "refunded", timeout=30)
        assert pay.double.orders[order_no].refunded == 700
        assert user.balance() == 0


def test_a_query_answer_about_another_order_settles_nothing(
    audited: Platform, database: ScratchDatabase
) -> None:
    """A gateway that answers about another order (paid) when asked about this one: the
    order is not credited, and it still expires at its time instead of being asked about
    for ever."""
    for pay in rigs(audited, database, every_provider=False):
        user = pay.platform.new_user()
        order_no = pay.order(user, amount=200, points=20)
        pay.double.answers_about = "P" + "9" * 22
        try:
            _expire_now(pay, order_no)
            _wait_status(user, order_no, "expired")
        finally:
            pay.double.answers_about = None
        assert user.balance() == 0
