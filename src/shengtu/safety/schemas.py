from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

TierName = Literal["block", "replace", "review", "image"]


class WordsAdd(BaseModel):
    """Entries to add, one word each (a line of a pasted list), all of one tier."""

    words: list[str] = Field(min_length=1, max_length=10_000)
    tier: TierName
    note: str | None = Field(default=None, max_length=255)


class WordChange(BaseModel):
    tier: TierName | None = None
    note: str | None = Field(default=None, max_length=255)


class WordOut(BaseModel):
    id: int
    word: str
    tier: str
    note: str | None
    createTime: str


class WordsAdded(BaseModel):
    added: int
    # Entries that were already listed (by their folded form), or empty once folded.
    skipped: list[str]


class TryPrompt(BaseModel):
    prompt: str = Field(min_length=1, max_length=20_000)


class HitOut(BaseModel):
    word: str
    tier: str
    text: str
    start: int


class TriedOut(BaseModel):
    hits: list[HitOut]
    prompt: str
    verdict: Literal["pass", "block", "replace", "review"]


class HeldPictureOut(BaseModel):
    """A result picture held for review (tier "image"), where the operator sees it until
    the decision (then a refused one is deleted)."""

    url: str
    flagged: bool
    labels: str


class EventOut(BaseModel):
    id: int
    userId: int
    username: str | None
    tier: str
    taskNo: str | None
    prompt: str
    hits: list[HitOut]
    decision: str | None
    decidedBy: str | None
    decideTime: str | None
    createTime: str
    # Tier "image" only: the task's pictures the moderation service saw.
    pictures: list[HeldPictureOut] | None = None


class Decision(BaseModel):
    decision: Literal["approve", "deny"]


class SafetySummary(BaseModel):
    days: int
    blocked: int
    replaced: int
    flagged: int
    awaitingReview: int
    denied: int
    # Tasks whose result pictures the moderation service had held for review.
    heldPictures: int = 0
