"""A task's small rules, with no server: snippets, imageUrl, task numbers, the transition
table."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from shengtu.errors import BadRequest
from shengtu.models.tasks import TERMINAL, Status
from shengtu.tasks.machine import TRANSITIONS, IllegalTransition, check_move
from shengtu.tasks.schemas import image_url_field, prompt_snippet
from shengtu.tasks.service import make_task_no, parse_image_urls


def test_prompt_snippet_matches_the_spec() -> None:
    assert (
        prompt_snippet("一个可爱的橘猫在窗台上晒太阳,温馨的室内场景,柔和的光线")
        == "一个可爱的橘猫在窗台上晒太阳..."
    )
    assert prompt_snippet("一只可爱的柴犬") == "一只可爱的柴犬"
    assert prompt_snippet("猫" * 40) == "猫" * 30 + "..."
    assert prompt_snippet("A cat. On a mat") == "A cat..."


def test_image_url_forms() -> None:
    assert parse_image_urls(None, 10) == []
    assert parse_image_urls("  ", 10) == []
    assert parse_image_urls(" https://a.com/x.png ", 10) == ["https://a.com/x.png"]
    assert parse_image_urls('["https://a.com/1.png","https://a.com/2.png"]', 10) == [
        "https://a.com/1.png",
        "https://a.com/2.png",
    ]
    assert parse_image_urls(["https://a.com/1.png"], 10) == ["https://a.com/1.png"]
    for bad in ('["x", 1]', "[", '[{"a": 1}]', ["https://a.com/1.png", ""]):
        with pytest.raises(BadRequest):
            parse_image_urls(bad, 10)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="最多 2 张"):
        parse_image_urls(["https://a.com/1.png"] * 3, 2)
    assert image_url_field([]) is None
    assert image_url_field(["u"]) == "u"
    assert image_url_field(["u", "v"]) == '["u", "v"]'


def test_task_number_shape_and_uniqueness() -> None:
    created = datetime(2025, 10, 26, 7, 30, 45, 123000)  # UTC
    assert make_task_no(created, 4567, "Asia/Shanghai") == "TASK-20251026153045123-4567"
    numbers = {make_task_no(created, i, "Asia/Shanghai") for i in range(1, 10_001)}
    assert len(numbers) == 10_000
    assert all(re.match(r"^TASK-\d{17}-\d{4}$", n) for n in numbers)


def test_transition_table() -> None:
    assert {Status.COMPLETED, Status.FAILED} == TERMINAL
    for terminal in TERMINAL:
        assert TRANSITIONS[terminal] == frozenset()
    assert Status.FAILED in TRANSITIONS[Status.CREATED]
    assert Status.COMPLETED not in TRANSITIONS[Status.CREATED]  # never completed before upstream
    assert Status.QUEUED not in TRANSITIONS[Status.PROCESSING]  # progress never goes back
    with pytest.raises(IllegalTransition):
        check_move("completed", "failed")
    with pytest.raises(IllegalTransition):
        check_move("failed", "completed")
    check_move("processing", "completed")
