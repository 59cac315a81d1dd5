"""The content-safety page of the operator console in Debian's chromium (issue 25): the
review queue with a hostile prompt shown as text, and the word lists tuned from the page
(bulk add, a tier changed, a prompt tried, a word deleted). The user console's refusal of
a blocked prompt too. The last test takes the screenshot in ``docs/``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support import Platform, ok

DOCS = Path(__file__).resolve().parents[2] / "docs"
T2I = "sc_soraimg_text_1x1"  # 30 points
BLOCK_WORD = "炸药"
REVIEW_WORD = "枪支"
# An alert() that would fire if the prompt were ever put into the page as markup.
HOSTILE = f"<img src=x onerror=alert(1)> 一把{REVIEW_WORD}的素描"
NOTE = '<img src=x onerror="window.__xss=1">'


@pytest.fixture(scope="module")
def safe_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    # Two strikes: the user's blocked prompt is one, the operator's denial the second.
    platform = Platform(tmp_path_factory.mktemp("safety-console"), SHENGTU_SAFETY_STRIKES="2")
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()


def _dialogs(page: Any) -> list[tuple[str, str]]:
    """Every dialog the page opens, (type, message); a confirm() is accepted."""
    seen: list[tuple[str, str]] = []

    def opened(dialog: Any) -> None:
        seen.append((dialog.type, dialog.message))
        dialog.accept()

    page.on("dialog", opened)
    return seen


def _sign_in(page: Any, path: str, platform: Platform, name: str, password: str) -> None:
    if page.url.startswith("http"):  # one console's token must not sign in the other
        page.evaluate("localStorage.clear()")
    page.goto(platform.url + path)
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_selector("#app:not(.hidden)")


def _safety_tab(page: Any) -> None:
    page.click("#tab-safety")
    page.wait_for_selector("#panel-safety:not([hidden])")
    page.wait_for_selector("#safety-cards .card")
    page.wait_for_selector("#safety-words table, #safety-words p")


def _figure(page: Any, card: str) -> Any:
    return page.locator(f"#safety-card-{card} .figure")


def _no_markup_ran(page: Any) -> None:
    assert page.evaluate("window.__xss") is None, page.console_lines
    assert page.locator('img[src="x"]').count() == 0
    errors = [line for line in page.console_lines if line.startswith("pageerror")]
    refused = [line for line in page.console_lines if "Content Security Policy" in line]
    assert errors == [] and refused == [], page.console_lines


def test_a_flagged_prompt_waits_in_the_queue_as_text_and_is_denied(
    safe_platform: Platform, page: Any
) -> None:
    platform = safe_platform
    assert platform.admin is not None
    admin = platform.admin_client
    ok(admin.post("/admin/safety/words", json={"words": [BLOCK_WORD], "tier": "block"}))
    ok(admin.post("/admin/safety/words", json={"words": [REVIEW_WORD], "tier": "review"}))
    user = platform.new_user(points=100)
    user_id = user.user_id()
    dialogs = _dialogs(page)

    # The user console: a blocked prompt is refused with the words, nothing charged, and
    # the prompt stays as written, marked for the user to change.
    _sign_in(page, "/console/", platform, user.name, user.password)
    page.select_option("#model", T2I)
    page.fill("#prompt", f"一张{BLOCK_WORD}爆炸的海报")
    page.click("#submit")
    page.wait_for_selector("#submit-msg.bad")
    assert page.text_content("#submit-msg") == f"提示词含有不允许的内容:{BLOCK_WORD},请修改后再试"
    assert page.get_attribute("#prompt", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "prompt"
    assert page.input_value("#prompt") == f"一张{BLOCK_WORD}爆炸的海报"
    assert user.balance() == 100
    page.fill("#prompt", HOSTILE)
    assert page.get_attribute("#prompt", "aria-invalid") is None
    page.click("#submit")
    page.wait_for_selector("#submit-msg.ok")
    task_no = page.text_content("#submit-msg").split(":")[-1]
    assert user.balance() == 70

    # The operator's queue: the prompt exactly as written, the hit marked, no markup run.
    _sign_in(page, "/console/admin", platform, "admin", platform.admin.password)
    _safety_tab(page)
    item = page.locator("#safety-queue article.review")
    expect(item).to_have_count(1)
    assert item.locator(".prompt").text_content() == HOSTILE
    assert item.locator("mark").all_text_contents() == [REVIEW_WORD]
    assert task_no in item.locator(".meta").first.text_content()
    assert user.name in item.locator(".meta").first.text_content()
    expect(_figure(page, "blocked")).to_have_text("1")
    expect(_figure(page, "flagged")).to_have_text("1")
    expect(_figure(page, "awaiting")).to_have_text("1")
    expect(_figure(page, "denied")).to_have_text("0")

    item.locator("[data-deny]").click()
    page.wait_for_selector("#safety-msg.ok")
    expect(page.locator("#safety-queue")).to_have_text("没有待审核的提示词")
    expect(_figure(page, "awaiting")).to_have_text("0")
    expect(_figure(page, "denied")).to_have_text("1")
    denied = ok(admin.get("/admin/safety/events", params={"state": "deny"}))["records"]
    assert [(e["taskNo"], e["prompt"], e["decidedBy"]) for e in denied] == [
        (task_no, HOSTILE, "admin")
    ]
    assert platform.audit_entries(f"event:{denied[0]['id']}")[0]["action"] == "safety.deny"
    # The denial was the second strike: the user is disabled.
    assert user.client.get("/user/points/consumption/balance").status_code == 401

    # The history: filtered by decision, then by the user (from the row's user button).
    page.select_option("#safety-event-state", "deny")
    page.click("#safety-event-search")
    rows = page.locator("#safety-events tbody tr")
    expect(rows).to_have_count(1)
    assert rows.locator(".prompt").text_content() == HOSTILE
    assert "已拒绝 · admin" in rows.text_content()
    page.select_option("#safety-event-state", "")
    rows.locator("[data-filter-user]").click()
    expect(rows).to_have_count(2)
    assert page.input_value("#safety-event-user") == str(user_id)
    assert rows.locator("mark").all_text_contents() == [REVIEW_WORD, BLOCK_WORD]
    page.fill("#safety-event-user", "abc")
    page.click("#safety-event-search")
    expect(page.locator("#safety-msg")).to_have_text("用户 ID 须为正整数")

    assert dialogs == []
    _no_markup_ran(page)


def test_the_operator_tunes_the_word_lists_and_tries_a_prompt(
    safe_platform: Platform, page: Any
) -> None:
    platform = safe_platform
    assert platform.admin is not None
    admin = platform.admin_client
    dialogs = _dialogs(page)
    _sign_in(page, "/console/admin", platform, "admin", platform.admin.password)
    _safety_tab(page)

    # Bulk add: one word a line; a line that folds to a listed word is skipped, blanks too.
    page.fill("#safety-new-words", "赌博\n 博彩 \n\n赌 博\n")
    page.select_option("#safety-new-tier", "replace")
    page.fill("#safety-new-note", NOTE)
    page.click("#safety-add")
    page.wait_for_selector("#safety-add-msg.ok")
    assert page.text_content("#safety-add-msg") == (
        "已添加 2 个词条;跳过 1 个(已在词库中或为空):赌 博"
    )
    assert page.input_value("#safety-new-words") == ""

    # Search folds like the matcher: the traditional 賭 finds 赌博; the tier filter.
    page.fill("#safety-word-q", "賭")
    page.click("#safety-word-search")
    words = page.locator("#safety-words tbody tr")
    expect(words).to_have_count(1)
    assert words.locator("td").first.text_content() == "赌博"
    assert words.locator("td").nth(2).text_content() == NOTE
    page.fill("#safety-word-q", "")
    page.select_option("#safety-word-tier", "replace")
    page.click("#safety-word-search")
    expect(words).to_have_count(2)
    assert sorted(words.locator("td:first-child").all_text_contents()) == ["博彩", "赌博"]

    # A tier changed in place: the list (filtered on replace) drops it, the API has it.
    words.filter(has_text="博彩").locator("select").select_option("block")
    page.wait_for_selector("#safety-word-msg.ok")
    expect(words).to_have_count(1)
    listed = ok(admin.get("/admin/safety/words", params={"q": "博彩"}))["records"]
    assert [(w["word"], w["tier"], w["note"]) for w in listed] == [("博彩", "block", NOTE)]

    # A prompt tried: an emoji first (two UTF-16 units), a traditional and spaced-out
    # evasion, the marks on the words as written, the masked prompt as it would go.
    prompt = "🐱 来一场 賭·博 和 博彩 游戏"
    page.fill("#safety-try-prompt", prompt)
    page.click("#safety-try")
    page.wait_for_selector("#safety-verdict")
    assert page.text_content("#safety-verdict") == "拦截:提交会被拒绝(400),不扣积分"
    marks = page.locator("#safety-tried mark")
    assert marks.all_text_contents() == ["賭·博", "博彩"]
    assert marks.evaluate_all("ms => ms.map(m => m.className)") == [
        "hit tier-replace",
        "hit tier-block",
    ]
    assert page.text_content("#safety-tried .prompt") == prompt
    assert page.text_content("#safety-masked") == "🐱 来一场 *·* 和 博彩 游戏"
    assert "賭·博 → 赌博" in page.text_content("#safety-tried")
    page.fill("#safety-try-prompt", "一只柴犬在樱花树下")
    page.click("#safety-try")
    expect(page.locator("#safety-verdict")).to_have_text("通过:没有命中任何词条")
    assert page.locator("#safety-tried mark").count() == 0
    page.fill("#safety-try-prompt", prompt)
    page.click("#safety-try")
    expect(page.locator("#safety-tried mark")).to_have_count(2)

    # A word deleted, after a confirm().
    page.select_option("#safety-word-tier", "")
    page.click("#safety-word-search")
    page.click("[aria-label='删除 赌博']")
    page.wait_for_selector("#safety-word-msg.ok")
    expect(page.locator("#safety-words td:text-is('赌博')")).to_have_count(0)
    assert ok(admin.get("/admin/safety/words", params={"q": "赌博"}))["total"] == 0
    assert [kind for kind, _ in dialogs] == ["confirm"]

    # For the picture: a flagged prompt waiting, found by Refresh.
    ok(admin.post("/admin/safety/words", json={"words": ["弹药"], "tier": "review"}))
    flagged = platform.new_user(points=100).submit(modelName=T2I, prompt="玩具弹药箱")
    assert flagged["code"] == 200, flagged
    page.click("#safety-refresh")
    expect(page.locator("#safety-queue article.review")).to_have_count(1)
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "console-safety.png"), full_page=True)
    # In English: the page's own words switch, the prompt's do not. Tried again, the
    # deleted word is no longer caught.
    page.click("#lang")
    expect(page.locator("#tab-safety")).to_have_text("Content safety")
    page.click("#safety-try")
    expect(page.locator("#safety-verdict")).to_have_text(
        "Blocked: the submit is refused (400), nothing charged"
    )
    assert page.locator("#safety-tried mark").all_text_contents() == ["博彩"]
    assert page.text_content("#safety-masked") == prompt
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    _no_markup_ran(page)
