"""Debian's chromium, driven by Playwright, for tests of the consoles.

``make test`` installs chromium when it is missing and it can (root with apt-get). Without
it the browser tests are skipped on a developer's machine and fail under ``CI=true``. A
failing browser test leaves a screenshot in ``build/browser-failures/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FAILURE_DIR = Path(__file__).resolve().parent.parent / "build" / "browser-failures"


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        message = "chromium 未安装:浏览器测试需要 Debian 的 chromium 包(apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; its console messages are kept in ``page.console_lines``."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.console_lines = []
    tab.on("console", lambda msg: tab.console_lines.append(f"{msg.type}: {msg.text}"))
    tab.on("pageerror", lambda exc: tab.console_lines.append(f"pageerror: {exc}"))
    try:
        yield tab
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            FAILURE_DIR.mkdir(parents=True, exist_ok=True)
            shot = FAILURE_DIR / f"{request.node.name}.png"
            tab.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}\nconsole:\n" + "\n".join(tab.console_lines))
        context.close()
