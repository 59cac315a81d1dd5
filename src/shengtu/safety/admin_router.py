"""``/admin/safety``: the word lists, a prompt tried against them, the review queue of
flagged prompts, and what the check caught (admins only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from shengtu.api.envelope import Envelope, Page, PageNo, PageSize, ok
from shengtu.auth.deps import AdminDep
from shengtu.context import ContextDep
from shengtu.models.safety import SafetyEvent, SafetyWord
from shengtu.safety import admin_service as service
from shengtu.safety.schemas import (
    Decision,
    EventOut,
    HeldPictureOut,
    HitOut,
    SafetySummary,
    TierName,
    TriedOut,
    TryPrompt,
    WordChange,
    WordOut,
    WordsAdd,
    WordsAdded,
)
from shengtu.safety.service import hits_json, strictest
from shengtu.timefmt import fmt

router = APIRouter(tags=["admin: safety"])


def word_out(row: SafetyWord, tz: str) -> WordOut:
    return WordOut(
        id=row.id,
        word=row.word,
        tier=row.tier,
        note=row.note,
        createTime=fmt(row.created_at, tz) or "",
    )


def _hits(hits: list[dict[str, Any]]) -> list[HitOut]:
    return [HitOut(**h) for h in hits]


def _pictures(event: SafetyEvent, url: Callable[[str], str]) -> list[HeldPictureOut] | None:
    if event.tier != "image":
        return None
    return [
        HeldPictureOut(url=url(str(h["key"])), flagged=bool(h.get("flagged")), labels=h["word"])
        for h in event.hits
        if h.get("key")
    ]


def event_out(
    event: SafetyEvent, username: str | None, tz: str, url: Callable[[str], str]
) -> EventOut:
    return EventOut(
        id=event.id,
        userId=event.user_id,
        username=username,
        tier=event.tier,
        taskNo=event.task_no,
        prompt=event.prompt,
        hits=_hits(event.hits),
        decision=event.decision,
        decidedBy=event.decided_by,
        decideTime=fmt(event.decided_at, tz),
        createTime=fmt(event.created_at, tz) or "",
        pictures=_pictures(event, url),
    )


@router.get("/admin/safety/words", response_model=Envelope[Page[WordOut]])
async def list_words(
    ctx: ContextDep,
    _: AdminDep,
    q: Annotated[str | None, Query(max_length=64)] = None,
    tier: TierName | None = None,
    page: PageNo = 1,
    size: PageSize = 50,
) -> Envelope[Page[WordOut]]:
    rows, total = await service.find_words(ctx.db, q=q, tier=tier, page=page, size=size)
    tz = ctx.settings.timezone
    return ok(Page[WordOut].of([word_out(r, tz) for r in rows], total, page, size))


@router.post("/admin/safety/words", response_model=Envelope[WordsAdded])
async def add_words(body: WordsAdd, ctx: ContextDep, admin: AdminDep) -> Envelope[WordsAdded]:
    """Entries of one tier, one word each; those already listed are skipped."""
    added, skipped = await service.add_words(ctx.db, admin, body)
    ctx.prompt_check.invalidate()
    return ok(WordsAdded(added=added, skipped=skipped))


@router.put("/admin/safety/words/{word_id}", response_model=Envelope[WordOut])
async def change_word(
    word_id: int, body: WordChange, ctx: ContextDep, admin: AdminDep
) -> Envelope[WordOut]:
    row = await service.change_word(ctx.db, admin, word_id, body)
    ctx.prompt_check.invalidate()
    return ok(word_out(row, ctx.settings.timezone))


@router.delete("/admin/safety/words/{word_id}", response_model=Envelope[None])
async def delete_word(word_id: int, ctx: ContextDep, admin: AdminDep) -> Envelope[None]:
    await service.delete_word(ctx.db, admin, word_id)
    ctx.prompt_check.invalidate()
    return ok(None)


@router.post("/admin/safety/try", response_model=Envelope[TriedOut])
async def try_prompt(body: TryPrompt, ctx: ContextDep, _: AdminDep) -> Envelope[TriedOut]:
    """What the check would do with ``prompt``, without keeping anything."""
    verdict = (await ctx.prompt_check.words()).check(body.prompt)
    shown: Literal["pass", "block", "replace", "review"] = "pass"
    if verdict.hits:
        shown = strictest(verdict)
    return ok(
        TriedOut(hits=_hits(hits_json(body.prompt, verdict)), prompt=verdict.prompt, verdict=shown)
    )


@router.get("/admin/safety/events", response_model=Envelope[Page[EventOut]])
async def list_events(
    ctx: ContextDep,
    _: AdminDep,
    tier: TierName | None = None,
    state: Literal["open", "approve", "deny"] | None = None,
    userId: Annotated[int | None, Query(ge=1)] = None,
    page: PageNo = 1,
    size: PageSize = 20,
) -> Envelope[Page[EventOut]]:
    """What the check caught, newest first; ``state=open``: the review queue."""
    rows, total = await service.find_events(
        ctx.db, tier=tier, state=state, user_id=userId, page=page, size=size
    )
    tz = ctx.settings.timezone
    url = ctx.moderation.operator_url
    return ok(Page[EventOut].of([event_out(e, n, tz, url) for e, n in rows], total, page, size))


@router.post("/admin/safety/events/{event_id}/decision", response_model=Envelope[EventOut])
async def decide(
    event_id: int, body: Decision, ctx: ContextDep, admin: AdminDep
) -> Envelope[EventOut]:
    event = await service.decide(
        ctx.db, admin, event_id, body.decision, ctx.settings.safety_strikes
    )
    if event.tier == "image":
        await ctx.bus.nudge_workers()
    return ok(event_out(event, None, ctx.settings.timezone, ctx.moderation.operator_url))


@router.get("/admin/safety/summary", response_model=Envelope[SafetySummary])
async def summary(
    ctx: ContextDep, _: AdminDep, days: Annotated[int, Query(ge=1, le=366)] = 1
) -> Envelope[SafetySummary]:
    return ok(await service.summary(ctx.db, days))
