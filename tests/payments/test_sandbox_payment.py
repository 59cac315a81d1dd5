"""``make run``'s sandbox payment: ``shengtu demo`` adds a 易支付 method served by the
EPay double inside the sandbox upstream, and tiers; a payer goes through the double's
cashier page as a browser would, and the points arrive."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.support import Platform, cli, ok, wait_for, wait_http


def test_make_runs_sandbox_payment_pays_by_hand(tmp_path: Path) -> None:
    platform = Platform(tmp_path).start()
    try:
        cli(platform.env, "demo")
        # The next start points the method at the double it serves.
        platform.server.stop()
        platform.server = platform.spawn("serve")
        wait_http(platform.url + "/healthz", platform.server)
        user = platform.new_user()
        options = ok(user.client.get("/user/pay/options"))
        assert [m["key"] for m in options["methods"]] == ["sandbox"]
        tier = options["tiers"][1]
        assert (tier["amount"], tier["points"], tier["bonus"]) == (3000, 3000, 300)
        order = ok(
            user.client.post("/user/pay/orders", json={"tierId": tier["id"], "method": "sandbox"})
        )
        assert order["checkout"]["kind"] == "redirect"
        with httpx.Client(timeout=10) as browser:
            # submit.php → the cashier page, with its pay button.
            page = browser.get(order["checkout"]["url"], follow_redirects=True)
            assert page.status_code == 200 and "确认支付" in page.text, page.text
            assert order["orderNo"] in page.text and "30.00" in page.text
            action = re.search(r"action='([^']+)'", page.text)
            assert action is not None
            back = browser.post(
                str(page.url.copy_with(path=action.group(1), query=None)), follow_redirects=False
            )
            # Back to the console's top-up page, which polls the order.
            assert back.status_code == 303
            assert back.headers["location"].startswith(f"{platform.url}/console/?payOrder=")
        wait_for(
            "the order paid",
            lambda: ok(user.client.get(f"/user/pay/orders/{order['orderNo']}"))["status"] == "paid",
        )
        assert user.balance() == 3300
        # Without the sandbox (a real upstream's key set), the method is turned off.
        platform.server.stop()
        platform.server = platform.spawn(
            "serve", env={**platform.env, "SHENGTU_SUCHUANG_API_KEY": "sk-real-" + "x" * 20}
        )
        wait_http(platform.url + "/healthz", platform.server)
        assert ok(user.client.get("/user/pay/options"))["methods"] == []
        platform.audit()
    finally:
        platform.stop()
