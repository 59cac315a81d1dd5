"""The top-up pages in Debian's chromium (issue 24): a user pays on the 易支付 double's
cashier page and by its QR code and watches the balance move; the operator's 支付 page and
the user's shows every user's text (user name, tier label, method label, notify, refund
reason) as text. The double runs in the test's process (tests/payments/harness.py) and the
platform's methods point at it, as an operator would set them."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.sync_api import expect

from shengtu.payments.providers.epay import signed
from shengtu.payments.sandbox.epay import EpayDouble
from tests.payments.harness import DoubleServer, served
from tests.support import Platform, Silent, serve_http, wait_for
from tests.web.test_consoles import _data, _fits_a_phone, _sign_in, _tab

SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def epay() -> Iterator[DoubleServer]:
    with served(EpayDouble()) as server:
        yield server


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    platform = Platform(tmp_path_factory.mktemp("payments-console")).start()
    try:
        yield platform
    finally:
        platform.stop()


def _admin(platform: Platform) -> httpx.Client:
    assert platform.admin is not None
    return platform.admin.client


def _method(platform: Platform, key: str, label: str, config: dict[str, str]) -> None:
    body = {"kind": "epay", "label": label, "enabled": True, "config": config}
    _data(_admin(platform).put(f"/admin/payments/methods/{key}", json=body))


def _watch_dialogs(page: Any) -> list[str]:
    """Every alert, confirm or prompt the page opens (a ran payload would open one)."""
    opened: list[str] = []

    def seen(dialog: Any) -> None:
        opened.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", seen)
    return opened


def _nothing_ran(page: Any, dialogs: list[str]) -> None:
    assert dialogs == [], dialogs
    assert page.locator('img[src="x"]').count() == 0
    refused = [line for line in page.console_lines if "Content Security Policy" in line]
    assert refused == [], "the console breaks its own CSP"
    errors = [line for line in page.console_lines if line.startswith("pageerror")]
    assert errors == [], errors


def test_a_user_tops_up_on_the_cashier_page_and_by_qr_code(
    shop: Platform, epay: DoubleServer, page: Any
) -> None:
    admin = _admin(shop)
    tier = _data(
        admin.post(
            "/admin/payments/tiers",
            json={"amount": 1000, "points": 1000, "bonus": 100, "label": "新手包"},
        )
    )
    _method(shop, "sbx", "沙箱支付", epay.merchant_config())
    # 易支付's API mode with WeChat Pay answers a QR code to scan.
    _method(shop, "sbxqr", "沙箱扫码", {**epay.merchant_config(), "mode": "mapi", "type": "wxpay"})
    user = shop.new_user(points=5)
    dialogs = _watch_dialogs(page)
    _sign_in(page, shop.url + "/console/", user.name, user.password)
    _tab(page, "topup")
    tier_box = page.locator(f"[data-tier='{tier['id']}']").locator("xpath=..")
    expect(tier_box).to_contain_text("¥10.00")
    expect(tier_box).to_contain_text("另赠 100 积分")
    expect(tier_box).to_contain_text("新手包")

    # A tier, paid on the provider's page; the provider sends the payer back.
    page.check(f"[data-tier='{tier['id']}']")
    page.check("input[name=method][value=sbx]")
    page.click("#pay-create")
    page.wait_for_url(epay.gateway + "/cashier/**")
    order_no = page.text_content("#order")
    assert page.text_content("#money") == "10.00"
    page.click("#pay")
    page.wait_for_url(shop.url + "/console/**")
    expect(page.locator("#pay-order-title")).to_have_text(f"订单 {order_no}")
    expect(page.locator("#pay-order-status")).to_have_attribute("data-status", "paid")
    expect(page.locator("#pay-order-msg")).to_have_text("支付成功,已到账 1100 积分")
    expect(page.locator("#topup-balance")).to_have_text(re.compile("^1105 "))
    # The provider's fields (its signature among them) do not stay in the address.
    assert page.url == shop.url + "/console/"
    page.wait_for_selector(f"#pay-orders tr:has-text('{order_no}'):has-text('已支付')")
    assert user.balance() == 1105

    # An amount out of bounds is refused before any order is made.
    page.check("#tier-custom")
    page.fill("#custom-amount", "0.5")
    page.check("input[name=method][value=sbxqr]")
    page.click("#pay-create")
    expect(page.locator("#topup-msg")).to_have_text("请输入 ¥1.00 至 ¥1,000.00 之间的金额")
    assert _data(user.client.get("/user/pay/orders"))["total"] == 1

    # An amount of one's own, paid by scanning the QR code.
    page.fill("#custom-amount", "12.34")
    expect(page.locator("#custom-hint")).to_contain_text("约得 1234 积分")
    page.click("#pay-create")
    page.wait_for_selector("#pay-qr-box:not(.hidden)")
    expect(page.locator("#pay-order-status")).to_have_attribute("data-status", "pending")
    expect(page.locator("#pay-order-msg")).to_have_text("")  # the last order's news is gone
    qr_order = page.text_content("#pay-order-title").removeprefix("订单 ")
    assert qr_order != order_no
    assert page.get_attribute("#pay-qr", "src").startswith("blob:")
    page.wait_for_function("() => document.getElementById('pay-qr').naturalWidth > 0")
    expect(page.locator("#pay-countdown")).to_have_text(re.compile(r"^剩余 (29:[0-5]\d|30:00)$"))
    expect(page.locator("#pay-order-summary")).to_contain_text("¥12.34 · 1234 积分 · 沙箱扫码")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "console-topup.png"), full_page=True)
    epay.pay(qr_order)  # the payer scans and pays in the provider's app
    expect(page.locator("#pay-order-status")).to_have_attribute("data-status", "paid")
    expect(page.locator("#pay-qr-box")).to_be_hidden()
    expect(page.locator("#pay-countdown")).to_have_text("")
    expect(page.locator("#topup-balance")).to_have_text(re.compile("^2339 "))
    assert user.balance() == 2339
    _tab(page, "create")
    expect(page.locator("#balance")).to_have_text(re.compile("^2339 "))

    _tab(page, "topup")
    page.click("#lang")
    expect(tier_box).to_contain_text("+100 bonus points")
    expect(page.locator("#pay-order-status")).to_have_text("Paid")
    expect(page.locator("#pay-orders th").nth(1)).to_have_text("Order")
    page.click("#lang")
    expect(tier_box).to_contain_text("另赠 100 积分")
    _fits_a_phone(page)
    _nothing_ran(page, dialogs)


def _open_order(page: Any, order_no: str) -> None:
    """An order's detail on the operator's page, once it is the one shown."""
    page.click(f"#pay-orders [data-order='{order_no}']")
    expect(page.locator("#pay-order-detail h2")).to_contain_text(order_no)


def _epay_notify(epay: DoubleServer, method_key: str, shop: Platform, order_no: str) -> str:
    """The URL of the notify the gateway sends for a paid order, with markup in its
    subject, signed with the merchant's key (the gateway repeats what it was given)."""
    double = epay.double
    assert isinstance(double, EpayDouble)
    order = double.orders[order_no]
    fields = {
        "pid": double.pid,
        "trade_no": order.trade_no,
        "out_trade_no": order_no,
        "type": "alipay",
        "name": XSS,
        "money": f"{order.amount / 100:.2f}",
        "trade_status": "TRADE_SUCCESS",
    }
    return f"{shop.url}/pay/notify/{method_key}?" + urlencode(signed(fields, double.key))


def test_every_users_text_on_the_payment_pages_is_text(
    shop: Platform, epay: DoubleServer, page: Any
) -> None:
    admin = _admin(shop)
    tier = _data(
        admin.post("/admin/payments/tiers", json={"amount": 2000, "points": 2000, "label": XSS})
    )
    # The API mode: the gateway knows the order as soon as it is made.
    _method(shop, "evil", XSS, {**epay.merchant_config(), "mode": "mapi"})
    victim = shop.new_user()
    order_no = _data(
        victim.client.post("/user/pay/orders", json={"tierId": tier["id"], "method": "evil"})
    )["orderNo"]
    epay.pay(order_no, notify=False)
    notify = _epay_notify(epay, "evil", shop, order_no)
    for verdict in ("credited", "duplicate"):
        answer = httpx.get(notify, headers={"X-Note": XSS})
        assert answer.text == "success", verdict
    assert victim.balance() == 2000
    forged = notify.replace("sign=", "sign=0", 1)
    assert httpx.get(forged, headers={"X-Note": XSS}).text != "success"
    _data(
        admin.post(f"/admin/payments/orders/{order_no}/refund", json={"amount": 500, "reason": XSS})
    )
    assert victim.balance() == 1500
    # User names cannot hold markup (letters, digits, Han, `_`, `.`, `-`): planted where
    # it would come from.
    with sqlite3.connect(shop.data_dir / "shengtu.db") as db:
        db.execute("UPDATE users SET username = ? WHERE username = ?", (XSS, victim.name))
    dialogs = _watch_dialogs(page)

    # The user's side: signed in by their token (the name cannot be typed at the sign-in).
    page.goto(shop.url + "/console/")
    page.fill("#token", victim.token)
    page.dispatch_event("#token", "change")
    page.wait_for_selector("#app:not(.hidden)")
    assert page.text_content("#who") == "当前用户:" + XSS
    _tab(page, "topup")
    tier_box = page.locator(f"[data-tier='{tier['id']}']").locator("xpath=..")
    expect(tier_box.locator(".meta")).to_have_text(XSS)
    expect(page.locator("#method-list label:has(input[value=evil]) span")).to_have_text(XSS)
    row = page.locator(f"#pay-orders tr:has-text('{order_no}')")
    expect(row.locator("td").nth(4)).to_have_text(XSS)
    page.click(f"#pay-orders [data-order='{order_no}']")
    expect(page.locator("#pay-order-summary")).to_have_text(f"¥20.00 · 2000 积分 · {XSS}")
    _tab(page, "points")
    expect(page.locator("#ledger td").filter(has_text="充值退款")).to_have_text("充值退款 " + XSS)
    _nothing_ran(page, dialogs)

    # The operator's side.
    page.evaluate("localStorage.clear()")
    assert shop.admin is not None
    _sign_in(page, shop.url + "/console/admin", "admin", shop.admin.password)
    _tab(page, "pay")
    page.wait_for_selector("#pay-tiers table")
    tier_labels = page.eval_on_selector_all(
        "#pay-tiers input[id$='-tierLabel']", "ns => ns.map(n => n.value)"
    )
    assert XSS in tier_labels
    expect(page.locator("#pay-methods td").filter(has_text="onerror")).to_have_text(XSS)
    page.fill("#po-no", order_no)
    page.click("#po-search")
    row = page.locator(f"#pay-orders tr:has-text('{order_no}')")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(1)).to_have_text(XSS)  # the user
    expect(row.locator("td").nth(4)).to_have_text(XSS)  # the method
    _open_order(page, order_no)
    detail = page.locator("#pay-order-detail")
    expect(detail.locator("h2 .meta")).to_have_text(f"{XSS} · {XSS} · 已退款")
    expect(detail.locator("dl")).to_contain_text("¥5.00 · 500 积分")
    notifies = detail.locator("details[data-notify]")
    verdicts = notifies.locator("summary")
    expect(verdicts.filter(has_text=re.compile(r" · GET · 已入账$"))).to_have_count(1)
    expect(verdicts.filter(has_text=re.compile(r" · GET · 重复通知( · |$)"))).to_have_count(1)
    for n in range(notifies.count()):
        notifies.nth(n).locator("summary").click()
        body = notifies.nth(n).locator("pre.body").text_content()
        assert f"name = {XSS}" in body.splitlines()
        assert "sign = ***" in body.splitlines()  # the signature is not kept
        assert f"x-note: {XSS}" in notifies.nth(n).locator("pre.headers").text_content()

    _tab(page, "audit")
    page.wait_for_selector("#audit td:has-text('payments.order.refund')")
    assert XSS in page.text_content("#audit")
    _tab(page, "pay")
    page.click("#report-load")
    page.wait_for_selector("#pay-report table")
    expect(page.locator("#pay-report td").filter(has_text="onerror")).to_have_text(f"{XSS} (evil)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "console-admin-payments.png"), full_page=True)
    _fits_a_phone(page)
    _nothing_ran(page, dialogs)


def test_an_operator_sets_up_payments_and_handles_orders_from_the_console(
    shop: Platform, epay: DoubleServer, page: Any
) -> None:
    assert shop.admin is not None
    admin = _admin(shop)
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.type)
        dialog.accept()

    page.on("dialog", accept)
    _sign_in(page, shop.url + "/console/admin", "admin", shop.admin.password)
    _tab(page, "pay")

    # Settings.
    expect(page.locator("#pay-currency")).to_have_value("CNY")
    page.fill("#pay-minutes", "20")
    page.fill("#pay-max", "500")
    page.click("#pay-settings-save")
    expect(page.locator("#pay-settings-msg")).to_have_text("已保存")
    settings = _data(admin.get("/admin/payments/settings"))
    assert (settings["orderMinutes"], settings["maxAmount"]) == (20, 50000)
    page.fill("#pay-minutes", "0")
    page.click("#pay-settings-save")
    expect(page.locator("#pay-settings-msg.bad")).not_to_be_empty()
    assert _data(admin.get("/admin/payments/settings"))["orderMinutes"] == 20

    # A tier: added, changed in place, deleted.
    page.fill("#tier-amount", "30")
    page.fill("#tier-points", "3000")
    page.fill("#tier-bonus", "300")
    page.fill("#tier-label", "大礼包")
    page.click("#tier-add")
    expect(page.locator("#pay-tiers-msg")).to_have_text("已保存")
    added = next(t for t in _data(admin.get("/admin/payments/tiers")) if t["label"] == "大礼包")
    assert (added["amount"], added["points"], added["bonus"]) == (3000, 3000, 300)
    page.fill(f"#tier-{added['id']}-tierPointsCol", "3100")
    page.click(f"[data-tier-save='{added['id']}']")
    # The add's own "已保存" is still shown: the saved value is what tells.
    wait_for(
        "the tier's new points",
        lambda: any(
            t["id"] == added["id"] and t["points"] == 3100
            for t in _data(admin.get("/admin/payments/tiers"))
        ),
    )
    expect(page.locator("#pay-tiers-msg")).to_have_text("已保存")
    page.click(f"[data-tier-delete='{added['id']}']")
    expect(page.locator(f"[data-tier-save='{added['id']}']")).to_have_count(0)
    assert all(t["id"] != added["id"] for t in _data(admin.get("/admin/payments/tiers")))

    # A method, typed in the form: its key is never shown again, and a blank keeps it.
    config = {**epay.merchant_config(), "mode": "mapi"}
    page.click("#method-new")
    page.fill("#method-key", "ui")
    page.select_option("#method-kind", "epay")
    page.fill("#method-label", "界面添加")
    for name, value in config.items():
        page.fill(f"#method-field-{name}", value)
    assert page.get_attribute("#method-field-key", "type") == "password"
    page.click("#method-save")
    expect(page.locator("#pay-methods-msg")).to_have_text("已保存")
    page.click("[data-method='ui']")
    expect(page.locator("#method-field-key")).to_have_value("")
    assert config["key"] not in (page.get_attribute("#method-field-key", "placeholder") or "")
    expect(page.locator("#method-field-pid")).to_have_value(config["pid"])
    page.fill("#method-label", "界面改名")
    page.click("#method-save")
    expect(page.locator("#pay-methods td").filter(has_text="界面改名")).to_have_count(1)
    assert config["key"] not in page.content()

    # Orders made with it (the gateway takes them: the key was kept).
    buyer = shop.new_user()
    made = [
        _data(buyer.client.post("/user/pay/orders", json={"amount": 300, "method": "ui"}))
        for _ in range(3)
    ]
    by_hand, lost, refunded = (o["orderNo"] for o in made)
    page.select_option("#po-method", "ui")
    page.select_option("#po-status", "pending")
    page.click("#po-search")
    expect(page.locator("#pay-orders tbody tr")).to_have_count(3)

    # Completed by hand, with a reason.
    _open_order(page, by_hand)
    page.click("#order-complete")
    expect(page.locator("#pay-order-msg")).to_have_text("请填写原因")
    assert buyer.balance() == 0
    page.fill("#order-complete-reason", "客户提供了支付截图")
    page.click("#order-complete")
    expect(page.locator("#pay-order-detail h2 .meta")).to_contain_text("已支付")
    expect(page.locator("#pay-order-detail dl")).to_contain_text("手动完成")
    assert buyer.balance() == 300

    # Paid at the gateway, its notify lost: asked now.
    epay.pay(lost, notify=False)
    page.fill("#po-no", lost)
    page.select_option("#po-status", "")
    page.click("#po-search")
    _open_order(page, lost)
    page.click("#order-check")
    expect(page.locator("#pay-order-detail h2 .meta")).to_contain_text("已支付")
    expect(page.locator("#pay-order-detail dl")).to_contain_text("主动查询")
    assert buyer.balance() == 600

    # Refunded in part: asked for a reason, confirmed, the points taken back.
    epay.pay(refunded)
    wait_for("the notify", lambda: buyer.balance() == 900)
    page.fill("#po-no", refunded)
    page.click("#po-search")
    _open_order(page, refunded)
    page.fill("#order-refund-amount", "1")
    page.click("#order-refund")
    expect(page.locator("#pay-order-msg")).to_have_text("请填写原因")
    page.fill("#order-refund-reason", "重复购买")
    page.click("#order-refund")
    expect(page.locator("#pay-order-detail h2 .meta")).to_contain_text("已退款")
    expect(page.locator("#pay-order-detail dl")).to_contain_text("¥1.00 · 100 积分")
    assert buyer.balance() == 800

    # A refund whose answer never comes (the gateway drops the connection): the points
    # stay taken, the page says why, offers no retry (易支付 has no refund number), and
    # the operator settles it from the gateway's records.
    silent = serve_http(Silent)
    _method(
        shop,
        "ui",
        "界面改名",
        {**config, "gateway": f"http://127.0.0.1:{silent.server_address[1]}"},
    )
    try:
        page.fill("#po-no", by_hand)
        page.click("#po-search")
        _open_order(page, by_hand)
        page.fill("#order-refund-reason", "用户申请")
        page.click("#order-refund")
        expect(page.locator("#pay-order-detail h2 .meta")).to_contain_text("退款中")
        expect(page.locator("#pay-order-msg")).to_contain_text("没有给出退款结果")
        expect(page.locator("#pay-order-detail dl")).to_contain_text("支付渠道没有给出结果")
        expect(page.locator("#order-refund-retry")).to_have_count(0)
        expect(page.locator("#refund-unsettled")).to_contain_text("不能安全地重复提交")
        assert buyer.balance() == 500
        page.click("#order-refund-undone")
        expect(page.locator("#pay-order-msg")).to_have_text("请填写原因")
        page.fill("#order-settle-reason", "易支付后台没有这笔退款")
        page.click("#order-refund-undone")
        expect(page.locator("#pay-order-detail h2 .meta")).to_contain_text("已支付")
        expect(page.locator("#pay-order-detail dl")).to_contain_text("运营确认未退款")
        assert buyer.balance() == 800
    finally:
        _method(shop, "ui", "界面改名", config)
        silent.shutdown()
    # The tier's deletion and the two refunds.
    assert dialogs == ["confirm", "confirm", "confirm"]

    # The orders as CSV, with the filters shown.
    page.fill("#po-no", "")
    page.select_option("#po-method", "ui")
    page.click("#po-search")
    with page.expect_download() as download:
        page.click("#po-export")
    csv = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert all(no in csv for no in (by_hand, lost, refunded))

    # The day's reconciliation, and the revenue on the dashboard.
    page.click("#report-load")
    row = page.locator("#pay-report tr").filter(has_text="界面改名 (ui)")
    expect(row.locator("td").nth(1)).to_have_text("3")
    _tab(page, "dash")
    expect(page.locator("#card-paid .figure")).to_have_text(re.compile(r"^¥\d"))
