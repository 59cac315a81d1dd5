"""The consoles and a model's options (issue 22), in Debian's chromium: the user console
shows a parameterized model's choices and the price the server quotes for them beside the
submit button, the charge is that price, and a task shows its pictures and the points of
the ones not delivered; the operator edits the parameters and the price rule, and a
definition the API refuses is shown with its reason."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support import Platform, User, ok

MODEL = "seedream-demo"
PARAMETERS = {
    "choices": {
        "size": {
            "values": ["1024x1024", "1024x1536", "1536x1024"],
            "default": "1024x1024",
            # The sandbox's 速创 upstream spells sizes as aspect ratios.
            "map": {"1024x1024": "1:1", "1024x1536": "2:3", "1536x1024": "3:2"},
        },
        "quality": {"values": ["low", "medium", "high"], "default": "medium"},
    },
    "maxN": 4,
}
RULE = {
    "choices": {
        "size": {"1024x1536": {"times": "1.5"}, "1536x1024": {"times": "1.5"}},
        "quality": {"low": {"points": 10}, "high": {"points": 160}},
    },
}
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    # No worker until the test starts one: the balance after a submit is the charge alone.
    platform = Platform(tmp_path_factory.mktemp("prices"), worker=False).start()
    try:
        ok(
            platform.admin_client.post(
                "/admin/models",
                json={
                    "modelName": MODEL,
                    "description": "Seedream 示例(尺寸 × 质量)",
                    "pointsCost": 40,
                    "taskType": "both",
                    "upstreamModel": "image_gpt",
                    "parameters": PARAMETERS,
                    "priceRule": RULE,
                    "sortOrder": -1,
                },
            )
        )
        yield platform
    finally:
        platform.stop()


def _sign_in(page: Any, url: str, name: str, password: str) -> None:
    page.goto(url)
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_selector("#app:not(.hidden)")


def _grouped_user(platform: Platform, multiplier: str, points: int) -> User:
    group = "g-" + secrets.token_hex(4)
    admin = platform.admin_client
    ok(admin.post("/admin/groups", json={"name": group, "multiplier": multiplier}))
    user = platform.new_user(points=points)
    ok(admin.put(f"/admin/users/{user.user_id()}", json={"group": group}))
    return user


def _quoted(user: User, **body: Any) -> int:
    return int(ok(user.client.post("/user/ai/quote", json={"modelName": MODEL, **body}))["total"])


def _no_page_errors(page: Any) -> None:
    refused = [line for line in page.console_lines if "Content Security Policy" in line]
    errors = [line for line in page.console_lines if line.startswith("pageerror")]
    assert refused == [] and errors == [], page.console_lines


def test_the_price_beside_the_button_is_the_quote_and_the_charge(
    priced: Platform, page: Any
) -> None:
    platform = priced
    user = _grouped_user(platform, "1.15", points=2000)
    _sign_in(page, platform.url + "/console/", user.name, user.password)
    expect(page.locator("#balance")).to_have_text(re.compile("^2000 "))
    page.select_option("#model", MODEL)
    page.wait_for_selector("#param-size")
    price = page.locator("#price")

    # Each change is priced by the server, for this user's group (×1.15, rounded up).
    steps: list[tuple[str, str, int, dict[str, Any]]] = [
        ("#param-size", "1024x1024", 46, {}),  # the defaults: 40 × 1.15
        ("#param-size", "1024x1536", 69, {"parameters": {"size": "1024x1536"}}),
        (
            "#param-quality",
            "high",
            276,
            {"parameters": {"size": "1024x1536", "quality": "high"}},
        ),
        (
            "#n",
            "3",
            828,
            {"parameters": {"size": "1024x1536", "quality": "high"}, "n": 3},
        ),
    ]
    for selector, value, total, body in steps:
        page.select_option(selector, value)
        expect(price).to_have_attribute("data-total", str(total))
        assert _quoted(user, **body) == total
    expect(price).to_have_text("价格:828 积分 (每张 276 × 3 张)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "console-prices.png"), full_page=True)

    # A reference image is priced too, when the rule says so.
    ok(
        platform.admin_client.put(
            f"/admin/models/{MODEL}", json={"priceRule": {**RULE, "perReference": 5}}
        )
    )
    page.fill("#ref", "https://example.com/ref.png")
    # (160 × 1.5 + 5) × 1.15 = 281.75 → 282 a picture.
    expect(price).to_have_attribute("data-total", str(3 * 282))
    page.fill("#ref", "")
    expect(price).to_have_attribute("data-total", "828")

    # English, with the same figures.
    page.click("#lang")
    expect(price).to_have_text("Price: 828 points (276 each × 3)")
    page.click("#lang")

    # The charge is the price shown.
    page.fill("#prompt", "三张竖图,高清")
    page.click("#submit")
    page.wait_for_selector("#submit-msg.ok")
    expect(page.locator("#balance")).to_have_text(re.compile("^1172 "))
    task_no = page.text_content("#submit-msg").split(":")[-1].strip()
    task = user.task(task_no)
    assert task["pointsCost"] == 828 and task["pictures"] == 3
    assert task["parameters"] == {"size": "1024x1536", "quality": "high", "n": 3, "references": 0}
    row = page.locator(f"[id='t-{task_no}']")
    expect(row.locator(".choices-made")).to_have_text("1024x1536 · high · 共 3 张 · 扣 828 积分")

    # A 速创 job makes one picture: the two not delivered come back at the price charged,
    # and the live update shows it.
    worker = platform.spawn("worker")
    try:
        page.wait_for_selector(f"[id='t-{task_no}'].status-completed", timeout=30_000)
        expect(row.locator(".choices-made")).to_have_text(
            "1024x1536 · high · 交付 1 / 3 张 · 扣 828 积分"
        )
        expect(row.locator(".refund")).to_have_text("退还 552 积分")
        expect(page.locator("#balance")).to_have_text(re.compile("^1724 "))
    finally:
        worker.stop()
    assert user.balance() == 1724
    page.screenshot(path=str(SHOTS / "console-prices-done.png"), full_page=True)
    _no_page_errors(page)


def test_a_spec_model_is_submitted_as_the_spec_sends_it(priced: Platform, page: Any) -> None:
    user = priced.new_user(points=100)
    _sign_in(page, priced.url + "/console/", user.name, user.password)
    page.select_option("#model", "sc_soraimg_text_1x1")
    expect(page.locator("#price")).to_have_attribute("data-total", "30")
    assert page.locator("#choices select").count() == 0 and page.is_hidden("#n-box")
    sent: list[Any] = []
    page.on(
        "request",
        lambda r: sent.append(r.post_data_json) if r.url.endswith("/tasks/submit") else None,
    )
    page.fill("#prompt", "一只猫")
    page.click("#submit")
    page.wait_for_selector("#submit-msg.ok")
    assert sent == [{"modelName": "sc_soraimg_text_1x1", "prompt": "一只猫"}]
    expect(page.locator("#balance")).to_have_text(re.compile("^70 "))
    _no_page_errors(page)


def test_the_operator_edits_parameters_and_prices(priced: Platform, page: Any) -> None:
    platform = priced
    assert platform.admin is not None
    _sign_in(page, platform.url + "/console/admin", "admin", platform.admin.password)
    page.click("#tab-models")
    page.click(f"[data-edit-model='{MODEL}']")
    page.wait_for_selector("#model-editor:not(.hidden)")
    # The preview lists each combination's price before the group multiplier.
    preview = page.locator("#model-preview tbody tr")
    expect(preview).to_have_count(9)
    expect(page.locator("#model-preview")).to_contain_text("240")

    # Two parameters with fixed prices: the API's reason, the rule marked.
    page.fill(
        "#model-rule",
        '{"choices": {"size": {"1024x1536": {"points": 50}}, "quality": {"high": {"points": 90}}}}',
    )
    page.click("#model-def-save")
    page.wait_for_selector("#model-def-msg.bad")
    assert "只能有一个参数给出固定价格" in page.text_content("#model-def-msg")
    assert page.get_attribute("#model-rule", "aria-invalid") == "true"
    # Not JSON at all: said before anything is sent.
    page.fill("#model-params", "{size:")
    page.click("#model-def-save")
    expect(page.locator("#model-def-msg")).to_have_text("parameters 不是合法的 JSON")
    assert page.get_attribute("#model-params", "aria-invalid") == "true"
    listed = ok(platform.admin_client.get("/admin/models"))
    model = next(m for m in listed if m["modelName"] == MODEL)
    assert model["parameters"] == PARAMETERS

    # A 4K tier, priced ×2, saved; the user's quote follows at once.
    params = {**PARAMETERS, "choices": {**PARAMETERS["choices"]}}
    params["choices"]["resolution"] = {"values": ["2K", "4K"], "default": "2K"}
    rule = {"choices": {**RULE["choices"], "resolution": {"4K": {"times": 2}}}}
    page.fill("#model-params", json.dumps(params))
    page.fill("#model-rule", json.dumps(rule))
    expect(preview).to_have_count(18)
    page.click("#model-def-save")
    page.wait_for_selector("#model-def-msg.ok")
    assert page.get_attribute("#model-rule", "aria-invalid") is None
    user = platform.new_user()
    each = ok(
        user.client.post(
            "/user/ai/quote",
            json={"modelName": MODEL, "parameters": {"resolution": "4K", "quality": "high"}},
        )
    )["each"]
    assert each == 320
    page.screenshot(path=str(SHOTS / "console-admin-prices.png"), full_page=True)
    _no_page_errors(page)
