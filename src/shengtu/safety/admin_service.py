"""The operator's side of the prompt check: the word lists, the review queue, the strikes.
Every change is written with its audit entry."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select, update

from shengtu.audit import service as audit
from shengtu.auth.principal import Principal
from shengtu.db import Database, utcnow
from shengtu.errors import BadRequest, NotFound
from shengtu.models.accounts import User
from shengtu.models.safety import SafetyEvent, SafetyWord
from shengtu.models.tasks import ACTIVE_SQL, AiTask
from shengtu.safety.schemas import SafetySummary, WordChange, WordsAdd
from shengtu.safety.service import count_strike
from shengtu.safety.words import fold

MAX_WORD_CHARS = 64
# The events that wait for a decision: a flagged prompt, held result pictures.
DECIDED_TIERS = ("review", "image")


async def add_words(db: Database, actor: Principal, body: WordsAdd) -> tuple[int, list[str]]:
    """Adds the entries not listed yet (by folded form); (added, skipped)."""
    wanted: dict[str, str] = {}
    skipped: list[str] = []
    for raw in body.words:
        word = raw.strip()
        if len(word) > MAX_WORD_CHARS:
            raise BadRequest(f"参数错误:词条最长 {MAX_WORD_CHARS} 个字符:{word[:20]}…")
        key = fold(word)
        if not key or key in wanted:
            skipped.append(word)
            continue
        wanted[key] = word
    async with db.write() as session:
        listed = set(
            await session.scalars(select(SafetyWord.folded).where(SafetyWord.folded.in_(wanted)))
        )
        now = utcnow()
        for key, word in wanted.items():
            if key in listed:
                skipped.append(word)
                continue
            session.add(
                SafetyWord(
                    word=word,
                    folded=key,
                    tier=body.tier,
                    note=body.note,
                    created_at=now,
                    updated_at=now,
                )
            )
        added = len(wanted) - len(listed)
        await audit.record(
            session,
            actor,
            "safety.words_add",
            f"tier:{body.tier}",
            None,
            {"added": added, "tier": body.tier},
        )
    return added, skipped


async def change_word(
    db: Database, actor: Principal, word_id: int, change: WordChange
) -> SafetyWord:
    async with db.write() as session:
        row = await session.get(SafetyWord, word_id)
        if row is None:
            raise NotFound("词条不存在")
        before = {"tier": row.tier, "note": row.note}
        if change.tier is not None:
            row.tier = change.tier
        if change.note is not None:
            row.note = change.note
        row.updated_at = utcnow()
        await audit.record(
            session,
            actor,
            "safety.word_change",
            f"word:{row.id}",
            before,
            {"tier": row.tier, "note": row.note},
        )
        await session.flush()
        return row


async def delete_word(db: Database, actor: Principal, word_id: int) -> None:
    async with db.write() as session:
        row = await session.get(SafetyWord, word_id)
        if row is None:
            raise NotFound("词条不存在")
        await audit.record(
            session,
            actor,
            "safety.word_delete",
            f"word:{row.id}",
            {"word": row.word, "tier": row.tier},
        )
        await session.execute(delete(SafetyWord).where(SafetyWord.id == word_id))


async def find_words(
    db: Database, *, q: str | None, tier: str | None, page: int, size: int
) -> tuple[list[SafetyWord], int]:
    where = []
    if q:
        where.append(SafetyWord.folded.contains(fold(q), autoescape=True))
    if tier:
        where.append(SafetyWord.tier == tier)
    async with db.read() as session:
        total = await session.scalar(select(func.count()).select_from(SafetyWord).where(*where))
        rows = await session.scalars(
            select(SafetyWord)
            .where(*where)
            .order_by(SafetyWord.id.desc())
            .offset((page - 1) * size)
            .limit(size)
        )
        return list(rows), int(total or 0)


async def find_events(
    db: Database, *, tier: str | None, state: str | None, user_id: int | None, page: int, size: int
) -> tuple[list[tuple[SafetyEvent, str | None]], int]:
    where = []
    if tier:
        where.append(SafetyEvent.tier == tier)
    if state == "open":
        where += [SafetyEvent.tier.in_(DECIDED_TIERS), SafetyEvent.decision.is_(None)]
    elif state in ("approve", "deny"):
        where.append(SafetyEvent.decision == state)
    if user_id is not None:
        where.append(SafetyEvent.user_id == user_id)
    async with db.read() as session:
        total = await session.scalar(select(func.count()).select_from(SafetyEvent).where(*where))
        rows = await session.execute(
            select(SafetyEvent, User.username)
            .join(User, User.id == SafetyEvent.user_id, isouter=True)
            .where(*where)
            .order_by(SafetyEvent.id.desc())
            .offset((page - 1) * size)
            .limit(size)
        )
        return [(e, name) for e, name in rows.tuples()], int(total or 0)


async def decide(
    db: Database, actor: Principal, event_id: int, decision: str, strikes: int
) -> SafetyEvent:
    """Approve or deny a flagged prompt, once; a denial is a strike against its user."""
    async with db.write() as session:
        event = await session.get(SafetyEvent, event_id)
        if event is None:
            raise NotFound("审核记录不存在")
        if event.tier not in DECIDED_TIERS:
            raise BadRequest("只有待审核的提示词或图片需要审核")
        now = utcnow()
        moved = await session.execute(
            update(SafetyEvent)
            .where(SafetyEvent.id == event_id, SafetyEvent.decision.is_(None))
            .values(decision=decision, decided_by=actor.username, decided_at=now)
        )
        if getattr(moved, "rowcount", 0) != 1:
            raise BadRequest("该记录已审核过")
        await audit.record(
            session,
            actor,
            f"safety.{decision}",
            f"event:{event_id}",
            None,
            {"userId": event.user_id, "taskNo": event.task_no},
        )
        if event.tier == "image" and event.task_no is not None:
            # The held task falls due: its worker carries the decision out through the
            # task's own moves (shengtu.tasks.review).
            await session.execute(
                update(AiTask)
                .where(AiTask.task_no == event.task_no, AiTask.status.in_(ACTIVE_SQL))
                .values(next_run_at=now)
            )
        await session.refresh(event)
        user_id = event.user_id
    if decision == "deny":
        await count_strike(db, user_id, strikes)
    return event


async def summary(db: Database, days: int) -> SafetySummary:
    since = utcnow() - timedelta(days=days)
    async with db.read() as session:
        rows = (
            await session.execute(
                select(SafetyEvent.tier, SafetyEvent.decision, func.count())
                .where(SafetyEvent.created_at >= since)
                .group_by(SafetyEvent.tier, SafetyEvent.decision)
            )
        ).all()
    counts = {(tier, decision): int(n) for tier, decision, n in rows}
    return SafetySummary(
        days=days,
        blocked=sum(n for (t, _), n in counts.items() if t == "block"),
        replaced=sum(n for (t, _), n in counts.items() if t == "replace"),
        flagged=sum(n for (t, _), n in counts.items() if t == "review"),
        awaitingReview=counts.get(("review", None), 0) + counts.get(("image", None), 0),
        denied=counts.get(("review", "deny"), 0) + counts.get(("image", "deny"), 0),
        heldPictures=sum(n for (t, _), n in counts.items() if t == "image"),
    )
