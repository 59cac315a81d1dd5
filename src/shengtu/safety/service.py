"""The prompt check where a prompt comes in: every submit (the spec's, ``/v1/images/*``,
the consoles') goes through :func:`screen` in ``tasks.service.validate_submit``.

The operator's list is read through a short cache (like the catalog): each process
re-reads it when it changed, at most every ``CACHE_SECONDS``, and at once after a change
made through this process. A blocked prompt is refused before anything is charged and
kept as an event; a masked or flagged one is kept with its task, in the submit's own
transaction.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import anyio
from sqlalchemy import func, select, update

from shengtu import metrics
from shengtu.db import Conn, Database, add
from shengtu.errors import BadRequest
from shengtu.models.accounts import User
from shengtu.models.audit import AuditEntry
from shengtu.models.safety import SafetyEvent, SafetyWord
from shengtu.safety.words import TIERS, Entry, Hit, Tier, Verdict, WordList

CACHE_SECONDS = 5.0
# What the user is shown of a blocked prompt: the words as they wrote them, a few.
SHOWN_HITS = 3


class PromptCheck:
    def __init__(self, db: Database, strikes: int = 0) -> None:
        self._db = db
        self._strikes = strikes
        self._words = WordList(())
        self._stamp: tuple[Any, ...] | None = None
        self._checked_at = -CACHE_SECONDS
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._checked_at = -CACHE_SECONDS

    async def words(self) -> WordList:
        if time.monotonic() - self._checked_at < CACHE_SECONDS:
            return self._words
        async with self._lock:
            if time.monotonic() - self._checked_at < CACHE_SECONDS:
                return self._words
            async with self._db.read() as session:
                stamp = tuple(
                    (
                        await session.execute(
                            select(
                                func.count(SafetyWord.id),
                                func.max(SafetyWord.id),
                                func.max(SafetyWord.updated_at),
                            )
                        )
                    ).one()
                )
                if stamp != self._stamp:
                    rows = (await session.execute(select(SafetyWord.word, SafetyWord.tier))).all()
                    entries = [Entry(word, check_tier(tier)) for word, tier in rows]
                    # Thousands of entries take a tenth of a second: off the event loop.
                    self._words = await anyio.to_thread.run_sync(WordList, entries)
                    self._stamp = stamp
            self._checked_at = time.monotonic()
            return self._words

    async def screen(self, user_id: int, prompt: str) -> Verdict:
        """The prompt's verdict; a blocked one is kept and refused (400) here."""
        verdict = (await self.words()).check(prompt)
        if verdict.blocked:
            await _keep(self._db, user_id, prompt, verdict)
            metrics.prompt_check("blocked")
            await count_strike(self._db, user_id, self._strikes)
            shown = "、".join(dict.fromkeys(_written(prompt, h) for h in verdict.blocked))
            raise BadRequest(
                f"提示词含有不允许的内容:{shown[:80]},请修改后再试",
                data={"blocked": [_written(prompt, h) for h in verdict.blocked[:SHOWN_HITS]]},
            )
        return verdict


def _written(prompt: str, hit: Hit) -> str:
    return prompt[hit.start : hit.end]


def hits_json(prompt: str, verdict: Verdict) -> list[dict[str, Any]]:
    return [
        {"word": h.word, "tier": h.tier, "text": _written(prompt, h), "start": h.start}
        for h in verdict.hits
    ]


def strictest(verdict: Verdict) -> Literal["block", "replace", "review"]:
    """What the event is: blocked, waiting for the operator (any word to review), or only
    masked."""
    if verdict.blocked:
        return "block"
    return "review" if verdict.flagged else "replace"


async def _keep(db: Database, user_id: int, prompt: str, verdict: Verdict) -> None:
    async with db.transaction() as session:
        await keep(session, user_id, prompt, verdict, None)


async def keep(
    session: Conn, user_id: int, prompt: str, verdict: Verdict, task_no: str | None
) -> None:
    """The event of a caught prompt (``prompt`` as the user wrote it)."""
    await add(
        session,
        SafetyEvent(
            user_id=user_id,
            tier=strictest(verdict),
            task_no=task_no,
            prompt=prompt,
            hits=hits_json(prompt, verdict),
        ),
    )


def count_let_through(verdict: Verdict) -> None:
    if verdict.replaced:
        metrics.prompt_check("replaced")
    if verdict.flagged:
        metrics.prompt_check("flagged")


def check_tier(tier: str) -> Tier:
    for known in TIERS:
        if tier == known:
            return known
    raise BadRequest("参数错误:tier 只能是 block、replace 或 review")


async def count_strike(db: Database, user_id: int, strikes: int) -> bool:
    """Disables the user once their blocked and denied prompts reach ``strikes`` (0: never).
    True when this disabled them."""
    if strikes <= 0:
        return False
    async with db.write() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(SafetyEvent)
            .where(
                SafetyEvent.user_id == user_id,
                (SafetyEvent.tier == "block") | (SafetyEvent.decision == "deny"),
            )
        )
        if int(count or 0) < strikes:
            return False
        moved = await session.execute(
            update(User)
            .where(User.id == user_id, User.is_active.is_(True), User.role != "admin")
            .values(is_active=False)
        )
        if getattr(moved, "rowcount", 0) != 1:
            return False
        session.add(
            AuditEntry(
                actor_id=None,
                actor_name="system",
                action="safety.strikes_disable",
                target=f"user:{user_id}",
                before={"active": True},
                after={"active": False, "strikes": int(count or 0)},
            )
        )
        return True
