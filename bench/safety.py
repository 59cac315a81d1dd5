"""The prompt check (issue 25): one 500-character prompt against a 10,000-entry word list,
under 50 µs of CPU. The list is half Chinese words of 2–4 characters, half Latin words of
5–10 letters, none of them in the prompt (the common case: nothing caught); the check
folds the prompt and walks the automaton all the same."""

from __future__ import annotations

import random
import time
from typing import Any

from shengtu.safety.words import Entry, WordList

TARGET_US = 50.0
PROMPT = (
    "一只可爱的橘猫坐在窗台上,阳光洒在它的毛发上,背景是城市的天际线,水彩画风格,高清细节。"
    "A cute orange cat sitting on a windowsill, soft morning light, watercolor style, "
    "highly detailed, 4k. "
)


def word_list(entries: int = 10_000, seed: int = 25) -> WordList:
    rng = random.Random(seed)
    chinese = [chr(c) for c in range(0x4E00, 0x9FA6)]
    latin = "abcdefghijklmnopqrstuvwxyz"
    words: list[str] = []
    while len(words) < entries:
        if len(words) % 2:
            word = "".join(rng.choice(chinese) for _ in range(rng.randint(2, 4)))
        else:
            word = "".join(rng.choice(latin) for _ in range(rng.randint(5, 10)))
        if word not in PROMPT.lower():
            words.append(word)
    return WordList(Entry(w, "block") for w in words)


def prompt_check_benchmark(report: Any, checks: int = 20_000) -> None:
    words = word_list()
    prompt = (PROMPT * (500 // len(PROMPT) + 1))[:500]
    assert not words.check(prompt).hits
    for _ in range(1000):  # the fold table and the caches, warm
        words.check(prompt)
    started = time.process_time()
    for _ in range(checks):
        words.check(prompt)
    each = (time.process_time() - started) / checks * 1e6
    report.row(
        "prompt check: 500 characters, 10,000-word list (CPU per check)",
        f"{each:.1f} µs",
        f"< {TARGET_US:.0f} µs",
        each < TARGET_US,
    )
