"""The operator console's task detail shows a task's upstream exchanges (issue 23) in
Debian's chromium: bodies as text, never markup, and no key on the page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shengtu.providers.registry import sandbox_key
from tests.support import SANDBOX_MODEL, Platform, ok, wait_for

PROMPT = '<img src=x onerror="window.__xss=7"> 柴犬 </pre><b>粗</b>'


@pytest.fixture(scope="module")
def console_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    platform = Platform(tmp_path_factory.mktemp("exchanges-console")).start()
    try:
        yield platform
    finally:
        platform.stop()


def test_the_task_detail_shows_each_exchange_as_text(console_platform: Platform, page: Any) -> None:
    platform = console_platform
    assert platform.admin is not None
    user = platform.new_user(points=30)
    task_no = user.submit(modelName=SANDBOX_MODEL, prompt=PROMPT)["data"]["taskNo"]
    assert user.wait(task_no)["status"] == "completed"
    wait_for(
        "the download among the exchanges",
        lambda: any(
            e["step"] == "download"
            for e in ok(platform.admin_client.get(f"/admin/tasks/{task_no}"))["exchanges"]
        ),
    )

    page.goto(platform.url + "/console/admin")
    page.fill("#username", "admin")
    page.fill("#password", platform.admin.password)
    page.click("#login")
    page.wait_for_selector("#app:not(.hidden)")
    page.click("#tab-tasks")
    page.fill("#task-q", task_no)
    page.click("#task-search")
    page.click(f"#admin-tasks [data-task='{task_no}']")
    page.wait_for_selector("#task-detail:not(.hidden) #exchanges")

    exchanges = page.locator("#exchanges details.exchange")
    assert exchanges.count() >= 3  # the submit, a poll or more, the download
    submit = exchanges.first
    assert "提交 · POST " in submit.locator("summary").text_content()
    submit.locator("summary").click()
    sent = submit.locator("pre.request").text_content()
    # The JSON body, laid out, with the prompt exactly as the user wrote it.
    assert f'"prompt": "{PROMPT.replace(chr(34), chr(92) + chr(34))}"' in sent, sent
    assert "Authorization: ***" in submit.locator("pre.headers").first.text_content()
    assert '"code": 200' in submit.locator("pre.response").text_content()
    assert "下载结果" in exchanges.last.locator("summary").text_content()
    assert page.locator("#task-detail b").count() == 0
    # Nothing of the detail missing shows as "null".
    assert not page.evaluate(
        "[...document.querySelector('#task-detail').childNodes]"
        ".some(n => n.textContent.trim() === 'null')"
    )

    assert sandbox_key(platform.settings()) not in page.content()
    assert page.evaluate("window.__xss") is None, page.console_lines
    assert page.locator('img[src="x"]').count() == 0
    assert not [line for line in page.console_lines if "Content Security Policy" in line]
    assert not [line for line in page.console_lines if line.startswith("pageerror")]
