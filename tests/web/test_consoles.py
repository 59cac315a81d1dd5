"""Both consoles in Debian's chromium (issue 13): a user's flows, an operator's flows, and
hostile text on every page shown as text. The tests take the screenshots in ``docs/``."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support import Platform, png

DOCS = Path(__file__).resolve().parents[2] / "docs"
XSS = '<img src=x onerror="window.__xss=1">'
T2I = "sc_soraimg_text_1x1"  # 30 points
I2I = "sc_soraimg_img2img_1x1"  # 35 points


@pytest.fixture(scope="module")
def consoles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    platform = Platform(tmp_path_factory.mktemp("consoles")).start()
    try:
        yield platform
    finally:
        platform.stop()


def _admin(platform: Platform) -> httpx.Client:
    assert platform.admin is not None
    return platform.admin.client


def _data(answer: httpx.Response) -> Any:
    body = answer.json()
    assert body["code"] == 200, body
    return body["data"]


def _no_markup_ran(page: Any) -> None:
    assert page.evaluate("window.__xss") is None, page.console_lines
    assert page.locator('img[src="x"]').count() == 0
    refused = [line for line in page.console_lines if "Content Security Policy" in line]
    assert refused == [], "the console breaks its own CSP"
    errors = [line for line in page.console_lines if line.startswith("pageerror")]
    assert errors == [], errors


def _sign_in(page: Any, url: str, name: str, password: str) -> None:
    page.goto(url)
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_selector("#app:not(.hidden)")


def _tab(page: Any, name: str) -> None:
    page.click(f"#tab-{name}")
    page.wait_for_selector(f"#panel-{name}:not([hidden])")
    # One panel on screen: a panel's own display (a grid) must not outweigh [hidden].
    shown = page.locator("[role=tabpanel]:visible")
    assert shown.count() == 1 and shown.get_attribute("id") == f"panel-{name}"


def _fits_a_phone(page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_a_user_signs_up_creates_pictures_and_manages_points_and_keys(
    consoles: Platform, page: Any
) -> None:
    platform = consoles
    name, password = "画家_01", "a-long-password"
    page.goto(platform.url + "/console/")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#register")
    page.wait_for_selector("#login-msg.ok")
    page.click("#login")
    page.wait_for_selector("#app:not(.hidden)")
    assert page.text_content("#who") == "当前用户:" + name
    page.wait_for_selector("#ws-state:has-text('已连接')")

    # Points come by a redemption code.
    code = _data(_admin(platform).post("/admin/codes", json={"count": 1, "points": 200}))
    _tab(page, "points")
    page.fill("#redeem-code", code["codes"][0])
    page.click("#redeem")
    page.wait_for_selector("#redeem-msg.ok")
    page.wait_for_selector("#ledger td:has-text('redeem')")
    _tab(page, "create")
    expect(page.locator("#balance")).to_have_text(re.compile("^200 "))

    # Text to image: the WebSocket moves the bar to 100 %, with no reload.
    page.select_option("#model", T2I)
    page.fill("#prompt", "一只柴犬在樱花树下")
    page.click("#submit")
    page.wait_for_selector("#submit-msg.ok")
    done = page.wait_for_selector(".task.status-completed", timeout=30_000)
    assert done.query_selector("[role=progressbar]").get_attribute("aria-valuenow") == "100"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1

    # Image to image with a dropped file: uploaded, previewed, used.
    page.select_option("#model", I2I)
    page.evaluate(
        """(bytes) => {
            const file = new File([new Uint8Array(bytes)], "ref.png", { type: "image/png" });
            const data = new DataTransfer();
            data.items.add(file);
            document.getElementById("drop").dispatchEvent(
                new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
        }""",
        list(png()),
    )
    page.wait_for_selector("#previews img")
    page.fill("#prompt", "把它变成水彩画")
    page.click("#submit")
    page.locator(".task.status-completed").nth(1).wait_for(timeout=30_000)
    task_no = page.text_content(".task .meta").split(" · ")[0]
    i2i = _data(
        httpx.get(
            platform.url + f"/user/ai/tasks/{task_no}",
            headers={"Authorization": "Bearer " + page.evaluate("localStorage['shengtu.token']")},
        )
    )
    assert i2i["modelName"] == I2I and "/files/" in (i2i["imageUrl"] or "")

    # A failed task: its reason, and its points back.
    page.select_option("#model", T2I)
    page.fill("#prompt", "会失败 [sandbox:fail]")
    page.click("#submit")
    failed = page.wait_for_selector(".task.status-failed", timeout=30_000)
    assert "内容安全策略" in failed.text_content() and "积分已退还" in failed.text_content()
    expect(page.locator("#balance")).to_have_text(re.compile("^135 "))

    # The large view, with download and link.
    page.click(".task.status-completed .thumb-button")
    page.wait_for_selector("#viewer[open]")
    assert page.get_attribute("#viewer-download", "href").startswith(platform.url + "/files/")
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")

    # An API key with a quota: shown once, listed, revoked (and then refused).
    _tab(page, "keys")
    page.fill("#key-name", "脚本")
    page.fill("#key-quota", "100")
    page.click("#key-create")
    page.wait_for_selector("#key-shown:not(.hidden)")
    raw = page.text_content("#key-raw")
    assert raw.startswith("sk-")
    assert httpx.get(platform.url + "/user/auth/me", headers={"X-API-Key": raw}).status_code == 200
    page.wait_for_selector("#keys td:has-text('0 / 100')")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#keys [data-key]")
    page.wait_for_selector("#keys p.meta")
    assert httpx.get(platform.url + "/user/auth/me", headers={"X-API-Key": raw}).status_code == 401
    assert raw not in page.text_content("#keys")

    _tab(page, "usage")
    assert raw not in page.content()  # shown once: leaving the tab forgets it
    page.wait_for_selector("#usage svg.chart")
    assert page.locator("#usage td").first.is_visible()

    # English, kept across a reload; the events' socket opened again in it (a failed
    # task's reason comes in the console's language).
    page.click("#lang")
    assert page.text_content("#tab-create") == "Create"
    page.wait_for_function("() => ws.url.endsWith('&lang=en') && ws.readyState === 1")
    page.reload()
    page.wait_for_selector("#app:not(.hidden)")
    assert page.text_content("#tab-points") == "Points"
    assert page.text_content("#who").startswith("Signed in as: ")
    page.click("#lang")
    assert page.text_content("#tab-points") == "积分"
    assert page.text_content("#who") == "当前用户:" + name
    page.wait_for_function("() => ws.url.endsWith('&lang=zh') && ws.readyState === 1")
    assert "积分" in page.text_content("#model option")

    _tab(page, "create")
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "console-user.png"), full_page=True)
    _fits_a_phone(page)
    page.screenshot(path=str(DOCS / "console-user-phone.png"), full_page=False)
    _no_markup_ran(page)


def test_an_operator_runs_the_business_from_the_console(consoles: Platform, page: Any) -> None:
    platform = consoles
    assert platform.admin is not None
    customer = platform.new_user(points=100)
    _sign_in(page, platform.url + "/console/admin", "admin", platform.admin.password)
    page.wait_for_selector("#card-tasks")
    tasks_before = int(page.text_content("#card-tasks .figure"))

    # A batch of codes.
    _tab(page, "codes")
    page.fill("#code-count", "3")
    page.fill("#code-points", "50")
    page.fill("#code-note", "开业活动")
    page.click("#code-create")
    page.wait_for_selector("#code-msg.ok")
    assert len(page.text_content("#code-made").split("\n")) == 3
    page.wait_for_selector("#codes td:has-text('开业活动')")
    assert page.locator("#codes tbody tr").count() == 3

    # Grant points to a user, then disable them: their next request is refused.
    _tab(page, "users")
    page.fill("#user-q", customer.name)
    page.click("#user-search")
    page.click("#users [data-user]")
    page.wait_for_selector("#user-detail:not(.hidden)")
    page.fill("#grant-amount", "70")
    page.fill("#grant-note", "客服补偿")
    page.click("#grant-apply")
    page.wait_for_selector("#user-msg.ok")
    assert customer.balance() == 170
    page.click("#user-toggle")
    page.wait_for_selector("#user-detail .meta")
    expect(page.locator("#user-toggle")).to_have_text("启用")
    assert customer.client.get("/user/points/consumption/balance").status_code == 401
    page.click("#user-toggle")
    expect(page.locator("#user-toggle")).to_have_text("停用")
    assert customer.balance() == 170

    # A new price: the next submit pays it.
    _tab(page, "models")
    page.fill(f"[id='price-{T2I}']", "40")
    page.click(f"[data-model='{T2I}']")
    page.wait_for_selector("#model-msg.ok")
    submitted = customer.submit(modelName=T2I, prompt="新价格")
    assert submitted["data"]["pointsCost"] == 40 and customer.balance() == 130
    customer.wait(submitted["data"]["taskNo"])

    # A channel, added with a sandbox upstream's address and key.
    url, key = platform.sandbox_upstream()
    _tab(page, "channels")
    page.fill("#ch-name", "备用线路")
    page.fill("#ch-url", url)
    page.fill("#ch-key", key)
    page.fill("#ch-models", f"{T2I}=image_gpt")
    page.click("#ch-create")
    page.wait_for_selector("#ch-msg.ok")
    page.wait_for_selector("#channels td:has-text('备用线路')")
    assert key not in page.content()

    # The stats moved by the task that ended.
    _tab(page, "dash")
    page.click("#stats-refresh")
    expect(page.locator("#card-tasks .figure")).not_to_have_text(str(tasks_before))
    assert int(page.text_content("#card-tasks .figure")) > tasks_before
    page.wait_for_selector(f"#by-model td:has-text('{T2I}')")

    _tab(page, "audit")
    page.wait_for_selector("#audit td:has-text('points.grant')")
    assert page.locator("#audit td:has-text('user.change')").count() >= 2
    _tab(page, "ledger")
    page.click("#ledger-run")
    page.wait_for_selector("#ledger-result table")
    assert "违反" not in page.text_content("#ledger-result tbody td:nth-child(3)")

    _tab(page, "dash")
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "console-admin.png"), full_page=True)
    _fits_a_phone(page)
    _no_markup_ran(page)


def test_hostile_text_shows_as_text_on_every_page(consoles: Platform, page: Any) -> None:
    platform = consoles
    assert platform.admin is not None
    admin = _admin(platform)
    # User names cannot hold markup (letters, digits, Han, `_`, `.`, `-`); everything
    # else an operator or a user types can.
    _data(admin.put(f"/admin/models/{I2I}", json={"description": XSS}))
    _data(admin.post("/admin/codes", json={"count": 1, "points": 1, "note": XSS}))
    _data(admin.post("/admin/groups", json={"name": "evil", "description": XSS}))
    url, key = platform.sandbox_upstream()
    _data(
        admin.post(
            "/admin/channels",
            json={
                "name": XSS,
                "baseUrl": url,
                "addKeys": [key],
                "models": [{"modelName": T2I, "upstreamModel": "image_gpt"}],
            },
        )
    )
    victim = platform.new_user(points=200)
    failed = victim.submit(modelName=T2I, prompt=XSS + " [sandbox:fail]")["data"]["taskNo"]
    victim.wait(failed)
    with sqlite3.connect(platform.data_dir / "shengtu.db") as db:
        db.execute("UPDATE ai_task SET error_message = ? WHERE task_no = ?", (XSS, failed))
    _data(victim.client.post("/user/api-keys", json={"name": XSS}))

    _sign_in(page, platform.url + "/console/", victim.name, victim.password)
    page.wait_for_selector(f"[id='t-{failed}'] .err")
    assert page.text_content(f"[id='t-{failed}'] .err") == XSS
    assert page.locator(f'#model option[value="{I2I}"]').text_content().startswith(XSS)
    for tab in ("points", "topup", "keys", "usage", "create"):
        _tab(page, tab)
        page.wait_for_load_state("networkidle")
    assert page.locator(f"#keys td:text-is('{XSS}')").count() == 1
    _no_markup_ran(page)

    page.evaluate("localStorage.clear()")
    _sign_in(page, platform.url + "/console/admin", "admin", platform.admin.password)
    for tab in ("dash", "users", "tasks", "channels", "models", "codes", "pay", "groups", "audit"):
        _tab(page, tab)
        page.wait_for_load_state("networkidle")
    # The audit log shows the channel's name inside its JSON.
    assert "onerror" in page.text_content("#audit")
    _tab(page, "tasks")
    page.wait_for_selector(f"#admin-tasks td:text-is('{XSS}')")
    _tab(page, "codes")
    page.click("#code-search")
    page.wait_for_selector(f"#codes td:text-is('{XSS}')")
    _tab(page, "channels")
    page.wait_for_selector(f"#channels td:text-is('{XSS}')")
    _tab(page, "groups")
    page.wait_for_selector(f"#groups td:text-is('{XSS}')")
    _tab(page, "users")
    page.fill("#user-q", victim.name)
    page.click("#user-search")
    page.click("#users [data-user]")
    page.wait_for_selector("#user-detail:not(.hidden)")
    assert re.search(r"window\.__xss", page.text_content("#user-detail"))
    _no_markup_ran(page)


def test_the_console_pages_send_their_security_headers(consoles: Platform) -> None:
    for path in ("/console/", "/console/admin"):
        r = httpx.get(consoles.url + path)
        assert r.status_code == 200
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
