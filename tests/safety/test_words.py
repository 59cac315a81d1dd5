"""The word lists' matcher: every evasion in the corpus caught, no ordinary prompt caught,
and each tier doing what it says."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shengtu.safety.words import Entry, WordList, fold
from tests.safety.corpus import LISTED, ORDINARY, evasions

WORDS = WordList(LISTED)
EVASIONS = evasions()


def test_the_corpora_are_large_enough() -> None:
    assert len(set(EVASIONS)) >= 100
    assert len(set(ORDINARY)) >= 100


@pytest.mark.parametrize(("prompt", "word"), EVASIONS)
def test_every_evasion_is_caught(prompt: str, word: str) -> None:
    assert word in {hit.word for hit in WORDS.check(prompt).hits}, prompt


@pytest.mark.parametrize("prompt", ORDINARY)
def test_no_ordinary_prompt_is_caught(prompt: str) -> None:
    assert WORDS.check(prompt).hits == ()


def test_a_hit_says_where_it_stands_in_the_prompt() -> None:
    prompt = "画一张 ｓ.Ｅ\u200bx 的图"
    (hit,) = WORDS.check(prompt).hits
    assert (hit.word, hit.tier) == ("sex", "block")
    assert prompt[hit.start : hit.end] == "ｓ.Ｅ\u200bx"


def test_replace_masks_the_word_and_nothing_else() -> None:
    verdict = WORDS.check("买 毒 品 和 COCAINE 的人")
    assert [h.word for h in verdict.replaced] == ["毒品", "cocaine"]
    assert verdict.blocked == () and verdict.flagged == ()
    assert verdict.prompt == "买 * * 和 ******* 的人"


def test_traditional_masking_keeps_the_prompts_other_characters() -> None:
    assert WORDS.check("販賣毒品").prompt == "販賣**"


def test_review_flags_and_changes_nothing() -> None:
    verdict = WORDS.check("一张賭博主题的海报, gambling den")
    assert [h.word for h in verdict.flagged] == ["赌博", "gambling"]
    assert verdict.prompt == "一张賭博主题的海报, gambling den"


def test_a_word_listed_twice_holds_its_strictest_tier() -> None:
    words = WordList([Entry("赌博", "review"), Entry("賭 博", "block")])
    assert [h.tier for h in words.check("赌博").hits] == ["block"]
    assert words.size == 1


def test_a_latin_word_must_stand_as_a_word() -> None:
    assert WORDS.check("Sussex").hits == ()
    assert WORDS.check("s\u200be\u200bx\u200by").hits == ()  # 'sexy', not 'sex'
    assert WORDS.check("śéx́y").hits == ()
    assert [h.word for h in WORDS.check("śéx́ y").hits] == ["sex"]


def test_an_empty_list_checks_nothing() -> None:
    assert WordList([]).check("色情").hits == ()
    assert WordList([Entry(" \u200b ", "block")]).size == 0


@given(st.text(max_size=60))
def test_the_mapped_positions_agree_with_the_fold(text: str) -> None:
    """A listed word hidden anywhere in any text is found where it stands."""
    prompt = text + " 色\u200b情 " + text
    hits = [h for h in WORDS.check(prompt).hits if h.word == "色情"]
    assert hits
    assert any(fold(prompt[h.start : h.end]) == "色情" for h in hits)
