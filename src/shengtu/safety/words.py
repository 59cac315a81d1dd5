"""The operator's word lists, matched against a prompt before anything is charged.

Each entry has a tier: ``block`` (the request is refused, nothing charged), ``replace``
(the word is masked before the prompt goes upstream) or ``review`` (accepted, flagged for
the operator). Matching is on a folded form of both the entry and the prompt, so the usual
evasions fold back into the word:

- full-width and half-width forms, ligatures, circled and mathematical letters (NFKD),
- case (``casefold``),
- accents and other combining marks, zero-width and other invisible characters, spaces,
  punctuation, symbols and emoji put inside a word (dropped),
- traditional characters (mapped to simplified, character by character, with OpenCC's
  ``t2s`` table, so an entry in either form matches a prompt in either).

Folding is one ``str.translate`` over a table built once per process, and the entries are
one Aho-Corasick automaton (``pyahocorasick``): the cost of a check grows with the
prompt, not with the list. Only a prompt that matches pays for the map back to the
original characters (to mask a word, or to check a Latin word's boundaries).

A Latin (or digit) entry must stand as a word in the prompt: the original characters
just before and after the match are not letters or digits, so ``sex`` catches
``S E X`` and ``s.e.x`` but not ``Sussex`` or ``this explains``. A Chinese entry matches
anywhere: the language puts no spaces between words.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import ahocorasick
import opencc

Tier = Literal["block", "replace", "review"]
TIERS: tuple[Tier, ...] = ("block", "replace", "review")
MASK = "*"

# Dropped wherever they are: they change how a word looks, never which word it is.
_DROPPED_CATEGORIES = frozenset(
    {"Cc", "Cf", "Co", "Cs", "Zs", "Zl", "Zp", "Mn", "Me", "Mc", "Sk", "Sm", "Sc", "So"}
    | {"Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"}
)
# Of the dropped, those that show as nothing or as part of the letter before them: they
# do not end a word.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Mn", "Me", "Mc"})
# Letters by category that show as nothing: Hangul fillers, the braille blank.
_INVISIBLE_LETTERS = frozenset({0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800})
# Beyond the BMP, the blocks that fold: mathematical and enclosed letters, emoji and other
# pictographs used as separators, tag characters, variation selectors, CJK compatibility.
_ASTRAL = (
    range(0x1D400, 0x1D800),
    range(0x1F100, 0x1F200),
    range(0x1F300, 0x1FB00),
    range(0x2F800, 0x2FA20),
    range(0xE0000, 0xE0080),
    range(0xE0100, 0xE01F0),
)
_CJK = (range(0x3400, 0x4DC0), range(0x4E00, 0xA000), range(0xF900, 0xFB00))


@functools.cache
def _fold_table() -> dict[int, str | int | None]:
    """Code point → its folded form (None: dropped; itself, as an int, where it folds to
    itself), for the whole BMP and the astral blocks that fold. About 0.1 s and 4 MB, once
    per process. ``str.translate`` raises and catches a KeyError for every character a
    table lacks: listing the unchanged ones too halves the cost of a fold."""
    simplify = opencc.OpenCC("t2s")
    simplified: dict[str, str] = {}
    for block in _CJK:
        for cp in block:
            ch = chr(cp)
            s = simplify.convert(ch)
            if s != ch and len(s) == 1:
                simplified[ch] = s
    table: dict[int, str | int | None] = {}
    for cp in (*range(0xD800), *range(0xE000, 0x10000), *_chain(_ASTRAL)):
        ch = chr(cp)
        folded = _fold_char(ch, simplified)
        table[cp] = cp if folded == ch else (folded or None)
    return table


def _chain(ranges: Iterable[range]) -> Iterable[int]:
    for r in ranges:
        yield from r


def _fold_char(ch: str, simplified: dict[str, str]) -> str:
    if ord(ch) in _INVISIBLE_LETTERS:
        return ""
    out = []
    for part in unicodedata.normalize("NFKD", ch):
        if unicodedata.category(part) in _DROPPED_CATEGORIES or ord(part) in _INVISIBLE_LETTERS:
            continue
        for c in part.casefold():
            out.append(simplified.get(c, c))
    return "".join(out)


def fold(text: str) -> str:
    """``text`` as the matcher sees it."""
    return text.translate(_fold_table())


def _octets(folded: str) -> str:
    """``folded``'s UTF-8, one character per byte: the automaton walks bytes, so no node
    has more than 256 children (with thousands of Chinese entries, the root's children
    would otherwise be searched one by one)."""
    return folded.encode("utf-8").decode("latin-1")


def _is_word_char(ch: str) -> bool:
    """A letter or digit of a script that separates words with spaces."""
    return (
        ch != "" and ch.isalnum() and not ("\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    )


@dataclass(frozen=True)
class Entry:
    word: str
    tier: Tier


@dataclass(frozen=True)
class Hit:
    word: str  # the entry as the operator listed it
    tier: Tier
    start: int  # where it stands in the prompt: prompt[start:end]
    end: int


@dataclass(frozen=True)
class Verdict:
    hits: tuple[Hit, ...]
    prompt: str  # the prompt to send upstream: each ``replace`` hit masked

    @property
    def blocked(self) -> tuple[Hit, ...]:
        return tuple(h for h in self.hits if h.tier == "block")

    @property
    def replaced(self) -> tuple[Hit, ...]:
        return tuple(h for h in self.hits if h.tier == "replace")

    @property
    def flagged(self) -> tuple[Hit, ...]:
        return tuple(h for h in self.hits if h.tier == "review")


# Of two entries folding to the same key, the stricter tier holds.
_STRICTNESS = {"block": 0, "replace": 1, "review": 2}


class WordList:
    """The entries of a list as one automaton; immutable, so one can serve every request
    while the next is built."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        keys: dict[str, Entry] = {}
        for entry in entries:
            key = fold(entry.word)
            if not key:
                continue
            held = keys.get(key)
            if held is None or _STRICTNESS[entry.tier] < _STRICTNESS[held.tier]:
                keys[key] = entry
        self._automaton = ahocorasick.Automaton()
        for key, entry in keys.items():
            self._automaton.add_word(
                _octets(key),
                (len(key.encode()), entry, _is_word_char(key[0]), _is_word_char(key[-1])),
            )
        self.size = len(keys)
        if keys:
            self._automaton.make_automaton()

    def check(self, prompt: str) -> Verdict:
        if not self.size:
            return Verdict((), prompt)
        found = list(self._automaton.iter(_octets(fold(prompt))))
        if not found:
            return Verdict((), prompt)
        return self._verdict(prompt, found)

    def _verdict(
        self, prompt: str, found: Sequence[tuple[int, tuple[int, Entry, bool, bool]]]
    ) -> Verdict:
        origin = _origins(prompt)
        hits: list[Hit] = []
        for end, (octets, entry, word_start, word_end) in found:
            first = origin[end - octets + 1]
            last = origin[end]
            if word_start and _is_word_char(_neighbour(prompt, first, -1)):
                continue
            if word_end and _is_word_char(_neighbour(prompt, last, 1)):
                continue
            hits.append(Hit(entry.word, entry.tier, first, last + 1))
        masked = list(prompt)
        for hit in hits:
            if hit.tier == "replace":
                for i in range(hit.start, hit.end):
                    if fold(prompt[i]):
                        masked[i] = MASK
        return Verdict(tuple(hits), "".join(masked))


def _neighbour(prompt: str, i: int, step: int) -> str:
    """The folded character next to ``prompt[i]`` in direction ``step``, past the marks and
    invisible characters that fold to nothing but separate nothing ("" at either end)."""
    i += step
    while 0 <= i < len(prompt):
        folded = fold(prompt[i])
        if folded:
            return folded[0] if step > 0 else folded[-1]
        if unicodedata.category(prompt[i]) not in _INVISIBLE_CATEGORIES:
            return ""
        i += step
    return ""


def _origins(prompt: str) -> list[int]:
    """For each byte of ``fold(prompt)``'s UTF-8, the index of the prompt's character it
    came from."""
    origin: list[int] = []
    for i, ch in enumerate(prompt):
        origin.extend([i] * len(fold(ch).encode("utf-8")))
    return origin
